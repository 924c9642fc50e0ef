// The console's shell: hash routes, the main navigation by role, the signed-in user and sign-out.

import { currentSession, onSessionChange, signOut } from "./api.js";
import { button, clear, errorBox, h, page } from "./dom.js";
import { can, roleNames } from "./roles.js";
import * as complaints from "./screens/complaints.js";
import * as customer from "./screens/customer.js";
import * as dashboards from "./screens/dashboards.js";
import * as loyalty from "./screens/loyalty.js";
import * as reviews from "./screens/reviews.js";
import * as search from "./screens/search.js";
import * as segments from "./screens/segments.js";
import * as signin from "./screens/signin.js";

const NAV = [
  { href: "#/customers", label: "Customers", permission: "customers.read" },
  { href: "#/reviews", label: "Merge review", permission: "customers.merge" },
  { href: "#/complaints", label: "Complaints", permission: "complaints.read" },
  { href: "#/segments", label: "Segments", permission: "segments.read" },
  { href: "#/loyalty", label: "Loyalty", permission: "loyalty.read" },
  { href: "#/dashboards", label: "Dashboards", permission: "dashboards.read" },
];

// [pattern, screen, permission]: the first match wins; `:name` captures a path segment.
const ROUTES = [
  ["/customers", search, "customers.read"],
  ["/customers/:id", customer, "customers.read"],
  ["/reviews", reviews, "customers.merge"],
  ["/reviews/:id", reviews, "customers.merge"],
  ["/complaints", complaints, "complaints.read"],
  ["/complaints/:id", complaints, "complaints.read"],
  ["/segments", segments, "segments.read"],
  ["/segments/:id", segments, "segments.read"],
  ["/loyalty", loyalty, "loyalty.read"],
  ["/loyalty/:program", loyalty, "loyalty.read"],
  ["/dashboards", dashboards, "dashboards.read"],
];

function parseHash() {
  const raw = window.location.hash.replace(/^#/, "") || "/";
  const [path, queryString] = raw.split("?");
  return { path, query: new URLSearchParams(queryString || "") };
}

function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, screen, permission] of ROUTES) {
    const want = pattern.split("/").filter(Boolean);
    if (want.length !== parts.length) continue;
    const params = {};
    let ok = true;
    want.forEach((w, i) => {
      if (w.startsWith(":")) params[w.slice(1)] = decodeURIComponent(parts[i]);
      else if (w !== parts[i]) ok = false;
    });
    if (ok) return { screen, permission, params };
  }
  return null;
}

function firstAllowed() {
  const entry = NAV.find((n) => can(n.permission));
  return entry ? entry.href : null;
}

function renderChrome() {
  const nav = clear(document.getElementById("nav"));
  const sessionEl = clear(document.getElementById("session"));
  const banner = clear(document.getElementById("banner"));
  const session = currentSession();
  if (!session) return;
  const { path } = parseHash();
  nav.append(
    h(
      "ul",
      {},
      NAV.filter((n) => can(n.permission)).map((n) => {
        const current = path === n.href.slice(1) || path.startsWith(`${n.href.slice(1)}/`);
        return h("li", {}, h("a", { href: n.href, "aria-current": current ? "page" : null }, n.label));
      }),
    ),
  );
  sessionEl.append(
    h("span", { class: "who", id: "signed-in-as" }, "Signed in as ", h("strong", {}, session.user), ` (${roleNames().join(", ") || "no role"})`),
    button("Sign out", () => {
      signOut();
      window.location.hash = "#/signin";
    }, { class: "secondary", id: "sign-out" }),
  );
  if (session.mode === "open") {
    banner.append(
      h("p", { class: "notice" }, "Sign-in is not enabled on this gateway: the API is open and every action is offered."),
    );
  }
}

async function route() {
  const main = document.getElementById("main");
  const { path, query } = parseHash();
  const session = currentSession();
  if (!session || path === "/signin") {
    if (session && path === "/signin") {
      window.location.hash = firstAllowed() || "#/customers";
      return;
    }
    renderChrome();
    signin.render(main, {}, query);
    return;
  }
  renderChrome();
  if (path === "/" || path === "") {
    const start = firstAllowed();
    if (start) {
      window.location.hash = start;
    } else {
      page(
        main,
        "Nothing to show",
        h("p", {}, "Your account has no staff role that uses the console (integration accounts use the API directly)."),
      );
    }
    return;
  }
  const found = match(path);
  if (!found) {
    page(main, "Page not found", h("p", {}, "There is no such page. "), h("a", { href: firstAllowed() || "#/" }, "Go to the start page"));
    return;
  }
  if (!can(found.permission)) {
    page(main, "Not allowed", errorBox({ status: 403, title: "Forbidden", detail: "this page is not available to your role" }));
    return;
  }
  try {
    await found.screen.render(main, found.params, query);
  } catch (error) {
    if (!currentSession()) {
      window.location.hash = "#/signin";
      return;
    }
    page(main, "Could not load this page", errorBox(error));
  }
}

onSessionChange((session) => {
  if (!session && parseHash().path !== "/signin") {
    window.location.hash = "#/signin";
  }
});
window.addEventListener("hashchange", route);
route();
