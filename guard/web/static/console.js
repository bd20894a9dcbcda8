// Draws every <canvas data-chart="ID"> from the JSON in <script type="application/json" id="ID">.
// data-type: "bar" (stacked when data-stacked is set) or "line". No inline scripts: the
// console works under a strict Content-Security-Policy.
(function () {
  "use strict";
  var palette = ["#1f5fa8", "#d4731c", "#2e8540", "#b0283c", "#6b4fa0", "#7a5a2a",
                 "#c2479a", "#5c6770", "#8a9a1b", "#1a8a9a"];
  function money(v) { return "$" + Number(v).toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 2}); }
  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") { return; }
    var spec = JSON.parse(source.textContent);
    var type = canvas.dataset.type || "bar";
    var stacked = canvas.hasAttribute("data-stacked");
    var datasets = spec.datasets.map(function (d, i) {
      var color = palette[i % palette.length];
      var out = {label: d.label, data: d.data, backgroundColor: color, borderColor: color};
      if (type === "line") {
        out.fill = false; out.pointRadius = d.flat ? 0 : 2; out.spanGaps = false;
        if (d.dashed) { out.borderDash = [6, 4]; }
        if (d.flat) { out.borderDash = [2, 3]; out.borderWidth = 2; }
      }
      return out;
    });
    new Chart(canvas, {
      type: type,
      data: {labels: spec.labels, datasets: datasets},
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: {mode: "index", intersect: false},
        scales: {
          x: {stacked: stacked, ticks: {maxRotation: 0, autoSkipPadding: 12}},
          y: {stacked: stacked, beginAtZero: true, ticks: {callback: money}}
        },
        plugins: {
          legend: {position: "bottom"},
          tooltip: {callbacks: {label: function (c) { return c.dataset.label + ": " + money(c.parsed.y); }}}
        }
      }
    });
  }
  function init() { Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), draw); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
}());
