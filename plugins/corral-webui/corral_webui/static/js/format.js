// Formatting and small DOM helpers shared by the pages.

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function size(bytes) {
  if (bytes == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Number(bytes);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

export function count(n) {
  if (n == null) return "";
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

export function duration(seconds) {
  if (seconds == null) return "never";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

let noticeTimer = null;

// A line in the header's status area (read out by screen readers).
export function notice(text, bad = false) {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.classList.toggle("bad", bad);
  clearTimeout(noticeTimer);
  if (!bad) noticeTimer = setTimeout(() => { el.textContent = ""; }, 6000);
}

// Arrow keys, Home and End move between the tabs of a tablist; returns the tab chosen.
export function tabKeys(list, event) {
  const tabs = [...list.querySelectorAll('[role="tab"]')];
  const at = tabs.indexOf(document.activeElement);
  if (at < 0) return null;
  const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 };
  if (!(event.key in moves)) return null;
  event.preventDefault();
  const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
  next.focus();
  return next;
}

export function selectTab(list, chosen) {
  for (const tab of list.querySelectorAll('[role="tab"]')) {
    const on = tab === chosen;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
  }
}
