// The order page: poll the order's JSON and update the timeline in place.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const timeline = document.getElementById("timeline");
  if (!timeline) return;
  const { clock, elapsed, poll, setStatus } = window.pubsub;
  const created = timeline.dataset.createdAt;
  const hint = document.getElementById("live-hint");
  hint.textContent = "Live: this timeline updates by itself.";

  const step = (name) => timeline.querySelector(`[data-step="${name}"]`);

  function show(li, status, label, at, reason) {
    setStatus(li, status);
    const badge = li.querySelector(".badge");
    setStatus(badge, status);
    badge.textContent = label;
    const when = li.querySelector(".when");
    when.dateTime = at || "";
    when.textContent = at ? clock(at) : "";
    li.querySelector(".after").textContent = at ? elapsed(at, created) : "";
    const why = li.querySelector(".reason");
    if (why) why.textContent = reason || "";
  }

  poll(timeline.dataset.orderUrl, (order) => {
    const published = step("published");
    show(published, order.published ? "processed" : "pending", order.published ? "published" : "in outbox", order.published_at, "");
    let settled = order.published;
    for (const [name, service] of Object.entries(order.services)) {
      const li = step(name);
      if (!li) continue;
      const done = service.status !== "pending";
      show(li, service.status, service.status, done ? service.updated_at : null, service.reason);
      settled = settled && done;
    }
    const overall = document.getElementById("order-status");
    setStatus(overall, order.status);
    overall.textContent = order.status;
    timeline.dataset.settled = settled ? "true" : "false";
    // Fast while the order moves; slowly afterwards (a redriven failure may still change).
    return settled ? 5000 : 500;
  }, () => {
    hint.textContent = "Live updates paused: the web did not answer. Retrying…";
  });
});
