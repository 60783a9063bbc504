// The monitor: a live uPlot chart of CPU, RAM and each GPU over the last minutes, fed by the server's
// event stream, with the watchdog's threshold as a line and its unloads marked.

import { stream } from "./api.js";
import { esc, notice, size } from "./format.js";

const KEEP = 600;  // points kept: five minutes at two a second

function loadUplot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  return new Promise((resolve, reject) => {
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = "/ui/vendor/uplot/uPlot.min.css";
    document.head.append(css);
    const script = document.createElement("script");
    script.src = "/ui/vendor/uplot/uPlot.iife.min.js";
    script.onload = () => resolve(window.uPlot);
    script.onerror = () => reject(new Error("could not load the chart library"));
    document.head.append(script);
  });
}

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

const PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];

export function page() {
  const box = document.getElementById("chart");
  let chart = null;
  let data = null;
  let gpuCount = 0;
  let controller = null;
  let points = 0;
  let evictions = [];  // times of watchdog unloads, drawn as vertical marks

  function build(uPlot, first) {
    gpuCount = first.gpus.length;
    const series = [
      {},
      { label: "CPU %", stroke: PALETTE[0], width: 1.5 },
      { label: "RAM %", stroke: PALETTE[1], width: 1.5 },
      { label: "Watchdog threshold %", stroke: color("--bad"), dash: [6, 4], width: 1 },
    ];
    first.gpus.forEach((g, i) => {
      series.push({ label: `GPU ${g.index} use %`, stroke: PALETTE[(2 + 2 * i) % PALETTE.length], width: 1.5 });
      series.push({ label: `GPU ${g.index} VRAM %`, stroke: PALETTE[(3 + 2 * i) % PALETTE.length], width: 1.5, dash: [2, 2] });
    });
    data = series.map(() => []);
    const marks = {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = color("--bad");
          ctx.lineWidth = 2;
          for (const t of evictions) {
            const x = u.valToPos(t, "x", true);
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    };
    chart = new uPlot({
      width: Math.max(320, box.clientWidth || 800),
      height: 320,
      series,
      plugins: [marks],
      scales: { y: { range: [0, 100] } },
      axes: [
        { stroke: color("--muted"), grid: { stroke: color("--line") } },
        { stroke: color("--muted"), grid: { stroke: color("--line") }, values: (u, v) => v.map((x) => `${x}%`) },
      ],
    }, data, box);
  }

  function add(point) {
    const row = [point.time, point.cpu, point.ram_percent, point.threshold];
    for (let i = 0; i < gpuCount; i++) {
      const g = point.gpus[i] || {};
      row.push(g.utilization ?? null, g.vram_percent ?? null);
    }
    row.forEach((v, i) => { data[i].push(v); if (data[i].length > KEEP) data[i].shift(); });
    evictions = (point.events || []).filter((e) => e.action === "unloaded").map((e) => e.time);
    chart.setData(data);
    points += 1;
    box.dataset.points = String(points);
    const gpu = point.gpus.map((g) => ` · GPU ${g.index} ${g.utilization ?? "?"}% / VRAM ${g.vram_percent == null ? "?" : g.vram_percent.toFixed(0)}%`).join("");
    document.getElementById("monitor-now").textContent =
      `CPU ${point.cpu.toFixed(0)}% · RAM ${point.ram_percent.toFixed(0)}% (${size(point.ram_used)} of ${size(point.ram_total)})${gpu} · watchdog at ${point.threshold}%`;
    document.getElementById("monitor-models").innerHTML = point.models.length
      ? point.models.map((m) => `<li>${esc(m.name)}: RAM ${size(m.ram)}${m.vram ? `, VRAM ${size(m.vram)}` : ""}</li>`).join("")
      : "<li class=\"hint\">none loaded</li>";
    document.getElementById("monitor-events").innerHTML = (point.events || []).length
      ? point.events.slice().reverse().map((e) => `<li>${new Date(e.time * 1000).toLocaleTimeString()} ${esc(e.action)} ${esc(e.model)} ${esc(e.detail)}</li>`).join("")
      : "<li class=\"hint\">none</li>";
  }

  async function run() {
    const mine = new AbortController();
    controller = mine;
    try {
      const uPlot = await loadUplot();
      if (mine.signal.aborted) return;  // left the page while the chart library loaded
      await stream("/corral/ui/api/monitor", null, (point) => {
        if (!chart) build(uPlot, point);
        add(point);
      }, mine.signal);
    } catch (err) {
      if (err.name !== "AbortError") notice(`monitor: ${err.message}`, true);
    }
  }

  window.addEventListener("resize", () => chart && chart.setSize({ width: Math.max(320, box.clientWidth), height: 320 }));
  return {
    show() { if (!controller) run(); },
    hide() { if (controller) controller.abort(); controller = null; },
  };
}
