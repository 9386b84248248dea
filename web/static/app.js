// Helpers shared by the page scripts (no framework, no build step).
"use strict";

window.pubsub = (function () {
  const money = (cents) =>
    "$" + ((cents || 0) / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

  // "2026-11-27T09:41:07.123+00:00" -> "09:41:07" (times are UTC, as on the server).
  const clock = (iso) => (iso ? new Date(iso).toISOString().slice(11, 19) : "");

  const elapsed = (iso, since) => {
    if (!iso || !since) return "";
    const seconds = Math.max(0, (Date.parse(iso) - Date.parse(since)) / 1000);
    return "+" + seconds.toFixed(2) + " s";
  };

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!response.ok) throw new Error(url + " answered " + response.status);
    return response.json();
  }

  // Poll `url`, hand each answer to `apply`; it returns the delay before the next poll.
  function poll(url, apply, onError) {
    let delay = 1000;
    const tick = async () => {
      try {
        delay = apply(await getJSON(url)) ?? delay;
      } catch (error) {
        if (onError) onError(error);
        delay = Math.min(delay * 2, 10000);
      }
      window.setTimeout(tick, delay);
    };
    tick();
  }

  function setStatus(element, status) {
    for (const name of [...element.classList]) {
      if (name.startsWith("status-")) element.classList.remove(name);
    }
    element.classList.add("status-" + status);
  }

  return { money, clock, elapsed, getJSON, poll, setStatus };
})();
