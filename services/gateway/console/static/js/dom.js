// Small DOM helpers: every element is built with createElement and text nodes (never innerHTML), so
// data from the API can never inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" && "value" in el) {
      el.value = value;
    } else if (key === "checked" || key === "selected" || key === "disabled") {
      el[key] = Boolean(value);
      if (key === "disabled") el.setAttribute("aria-disabled", "true");
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let idCounter = 0;
export function uid(prefix = "f") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

// A labelled form field. `control` is an input/select/textarea; a hint is tied with aria-describedby.
export function field(label, control, hint) {
  const id = control.id || uid("field");
  control.id = id;
  const parts = [h("label", { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, parts);
}

export function select(name, options, value, attrs = {}) {
  return h(
    "select",
    { name, ...attrs },
    options.map((o) => {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: String(v) === String(value ?? "") }, label);
    }),
  );
}

export function button(label, onClick, attrs = {}) {
  return h("button", { type: "button", onclick: onClick, ...attrs }, label);
}

export function section(title, ...children) {
  const id = uid("sec");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), children);
}

export function empty(message) {
  return h("p", { class: "empty" }, message);
}

// The problem document's `detail` (and field errors) as an alert.
export function errorBox(error) {
  const box = h("div", { class: "error-box", role: "alert" });
  const title = error && error.title ? error.title : "Something went wrong";
  append(box, [h("strong", {}, title), ": ", describe(error)]);
  if (error && Array.isArray(error.errors) && error.errors.length) {
    box.append(h("ul", {}, error.errors.map((e) => h("li", {}, `${e.field}: ${e.message}`))));
  }
  return box;
}

export function describe(error) {
  if (!error) return "unknown error";
  if (error.status === 403) {
    return `${error.detail || "forbidden"} — your role does not allow this.`;
  }
  return error.detail || error.message || String(error);
}

export function dl(pairs) {
  return h(
    "dl",
    { class: "pairs" },
    pairs
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === "" ? "—" : v)]),
  );
}

export function table(caption, columns, rows, attrs = {}) {
  if (!rows.length) return null;
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", {}, columns.map((c) => h("td", { "data-label": c.label }, c.render(row))))),
      ),
    ),
  );
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function fmtDate(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtDay(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleDateString(undefined, { dateStyle: "medium" });
}

export function fmtMoney(minor, currency) {
  if (minor === null || minor === undefined) return "—";
  const amount = minor / 100;
  try {
    return amount.toLocaleString(undefined, { style: "currency", currency: currency || "EUR" });
  } catch {
    return `${amount.toFixed(2)} ${currency || ""}`.trim();
  }
}

export function fmtNumber(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString();
}

export function fmtPct(x) {
  return x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`;
}

// "in 3 h 20 min" / "overdue by 2 d 4 h"
export function fmtDue(due, now = Date.now()) {
  if (!due) return "—";
  const ms = new Date(due).getTime() - now;
  const abs = Math.abs(ms);
  const mins = Math.floor(abs / 60000);
  const d = Math.floor(mins / 1440);
  const hr = Math.floor((mins % 1440) / 60);
  const m = mins % 60;
  const span = d ? `${d} d ${hr} h` : hr ? `${hr} h ${m} min` : `${m} min`;
  return ms < 0 ? `overdue by ${span}` : `in ${span}`;
}

export function customerName(c) {
  if (!c) return "—";
  if (c.organisation_name) return c.organisation_name;
  const name = [c.given_name, c.family_name].filter(Boolean).join(" ");
  return name || c.email || c.phone || c.id;
}

let toastTimer = null;
export function toast(message) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), 5000);
}

// Sets the page title and h1, and moves focus to the main region for screen-reader and keyboard users.
export function page(main, title, ...children) {
  clear(main);
  document.title = `${title} · CRM staff console`;
  main.append(h("h1", {}, title), ...children.flat().filter(Boolean));
  main.focus({ preventScroll: false });
}

// A form whose submit handler shows errors in the form and disables its submit button while running.
export function form(attrs, children, onSubmit) {
  const status = h("div", { class: "form-status", "aria-live": "polite" });
  const el = h("form", { ...attrs, novalidate: true }, children, status);
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(status);
    const submit = el.querySelector("button[type=submit]");
    if (submit) submit.disabled = true;
    try {
      await onSubmit(new FormData(el), status, el);
    } catch (error) {
      clear(status).append(errorBox(error));
    } finally {
      if (submit && submit.isConnected) {
        submit.disabled = false;
        submit.removeAttribute("aria-disabled");
      }
    }
  });
  return el;
}
