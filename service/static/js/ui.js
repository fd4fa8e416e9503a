// Small DOM and formatting helpers shared by the views.

/** h("button", {class: "x", onclick: f}, "text", child) -> an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const numbers = new Intl.NumberFormat("en-US");

export function count(n) {
  return n === undefined || n === null ? "–" : numbers.format(n);
}

export function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 1) return "< 1 s";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const TIME_FORMAT = { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };

export function time(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  // The month as a word: "12/2/2026" reads as 12 February in most of the world.
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, TIME_FORMAT);
}

/** A labelled progress bar; set(fraction or null, text) updates it in place. */
export function progressBar(label) {
  const fill = h("div", { class: "bar-fill" });
  const bar = h(
    "div",
    { class: "bar", role: "progressbar", "aria-label": label, "aria-valuemin": "0", "aria-valuemax": "100" },
    fill,
  );
  bar.set = (fraction, text, tone = "") => {
    bar.className = `bar ${tone}`;
    if (fraction === null || fraction === undefined) {
      bar.classList.add("indeterminate");
      bar.removeAttribute("aria-valuenow");
      fill.style.width = "100%";
    } else {
      const percent = Math.max(0, Math.min(100, fraction * 100));
      bar.setAttribute("aria-valuenow", percent.toFixed(1));
      fill.style.width = `${percent}%`;
    }
    bar.setAttribute("aria-valuetext", text || "");
  };
  return bar;
}

/** A short message for the person, read out by screen readers. */
export function toast(text, tone = "info") {
  const box = document.getElementById("toast");
  const item = h("div", { class: `toast ${tone}` }, text);
  box.append(item);
  setTimeout(() => item.remove(), tone === "error" ? 9000 : 5000);
}

/** A problem+json error as one readable line. */
export function problemText(error) {
  const p = error.problem || {};
  const where = p.parameter ? ` (${p.parameter})` : "";
  return `${p.title || "Error"}${where}: ${p.detail || error.message}`;
}

/** Renders a value from a job's params or a report as text. */
export function plain(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (Array.isArray(value)) return value.map(plain).join(", ");
  if (typeof value === "object") {
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${plain(v)}`)
      .join("; ");
  }
  return String(value);
}

/** A table from rows of objects, with the given [key, heading] columns. */
export function table(rows, columns, caption) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([, heading]) => h("th", { scope: "col" }, heading)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", {}, columns.map(([key]) => h("td", {}, plain(typeof key === "function" ? key(row) : row[key]))))),
      ),
    ),
  );
}
