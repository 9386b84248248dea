// The place-order form: keep the running total in step with the quantities.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form.order-form");
  const total = document.getElementById("order-total");
  if (!form || !total) return;
  const inputs = form.querySelectorAll("input[data-price-cents]");
  const update = () => {
    let cents = 0;
    for (const input of inputs) {
      const quantity = Number.parseInt(input.value, 10);
      if (Number.isInteger(quantity) && quantity > 0) cents += quantity * Number(input.dataset.priceCents);
    }
    total.value = window.pubsub.money(cents);
  };
  form.addEventListener("input", update);
  update();
});
