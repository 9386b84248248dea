// The pipeline dashboard: poll /api/pipeline, update the numbers and redraw the charts.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live) return;
  const { clock, money, poll } = window.pubsub;
  const SVG = "http://www.w3.org/2000/svg";
  const WINDOW_MS = 60000;
  // Counter samples per queue over the last minute, oldest first.
  const history = new Map();

  const text = (id, value) => {
    const element = document.getElementById(id);
    if (element && element.textContent !== String(value)) element.textContent = value;
  };

  // How much a counter grew over the last minute (or since the page opened, if sooner).
  function lastMinute(queue, field, counters, now) {
    const samples = history.get(queue) || [];
    const base = samples.find((s) => now - s.at <= WINDOW_MS) || samples[0];
    if (!base) return "–";
    // A counter that went down means its program restarted: count from zero again.
    const before = base.counters[field];
    return Math.round(counters[field] >= before ? counters[field] - before : counters[field]);
  }

  function svgElement(name, attributes, content) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    if (content !== undefined) element.textContent = content;
    return element;
  }

  function drawChart(id, chart) {
    const svg = document.querySelector(`#${id} svg`);
    if (!svg) return;
    const bars = svgElement("g", { class: "bars" });
    for (const b of chart.bars) {
      const group = svgElement("g", { class: "bar" });
      group.append(svgElement("title", {}, `${b.label}: ${b.text}`));
      group.append(svgElement("rect", { x: b.x, y: b.y, width: b.width, height: b.height }));
      const middle = b.x + b.width / 2;
      if (b.value) group.append(svgElement("text", { class: "value", x: middle, y: b.y - 4 }, b.text));
      if (b.show_label) group.append(svgElement("text", { class: "label", x: middle, y: chart.baseline + 16 }, b.label));
      bars.append(group);
    }
    svg.querySelector("g.bars").replaceWith(bars);
    const empty = svg.querySelector("text.empty");
    if (empty && !chart.empty) empty.remove();
  }

  function apply(state) {
    const now = Date.now();
    const a = state.analytics;
    text("stat-orders", a.orders);
    text("stat-revenue", money(a.revenue_cents));
    text("stat-average", money(a.average_order_cents));
    text("stat-units", a.units || 0);
    text("stat-backlog", state.outbox_backlog);
    document.getElementById("stat-backlog-card").classList.toggle("warn", state.outbox_backlog > 0);
    const error = document.getElementById("queues-error");
    error.hidden = !state.queues_error;
    error.textContent = state.queues_error ? "SQS did not answer: " + state.queues_error : "";

    for (const queue of state.queues) {
      const row = document.querySelector(`tr[data-queue="${queue.name}"]`);
      if (!row) continue;
      const cell = (field) => row.querySelector(`[data-field="${field}"]`);
      const counters = queue.counters;
      if (queue.depth) {
        cell("visible").textContent = queue.depth.visible;
        cell("in_flight").textContent = queue.depth.in_flight;
        const dlq = cell("dlq_visible");
        const link = dlq.querySelector("a");
        (link || dlq).textContent = queue.depth.dlq_visible;
        dlq.classList.toggle("warn", queue.depth.dlq_visible > 0);
      }
      if (counters.program) cell("program").textContent = counters.program;
      for (const field of ["processed", "failed", "retried", "dead_lettered"]) {
        cell(field).textContent = Math.round(counters[field]);
      }
      cell("processed_last_minute").textContent = lastMinute(queue.name, "processed", counters, now);
      cell("failed_last_minute").textContent = lastMinute(queue.name, "failed", counters, now);
      const samples = history.get(queue.name) || [];
      samples.push({ at: now, counters });
      while (samples.length > 1 && now - samples[1].at >= WINDOW_MS) samples.shift();
      history.set(queue.name, samples);
    }
    drawChart("chart-units", state.charts.units_by_sku);
    drawChart("chart-minutes", state.charts.orders_per_minute);
    const asOf = document.getElementById("as-of");
    asOf.dateTime = state.time;
    asOf.textContent = clock(state.time);
    live.classList.add("on");
    live.classList.remove("stale");
    return 2000;
  }

  poll(live.dataset.url, apply, () => live.classList.add("stale"));
});
