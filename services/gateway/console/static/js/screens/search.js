import { get } from "../api.js";
import { customerName, empty, errorBox, field, form, h, page, section, table } from "../dom.js";

const CRITERIA = [
  ["q", "Name", "Fuzzy: “ana garcia” finds “Ana García”", "search"],
  ["email", "E-mail", null, "email"],
  ["phone", "Phone", "Any format: +34 600 000 000", "tel"],
  ["card", "Loyalty card", null, "text"],
  ["external_id", "External id", "system:id, e.g. shop:1234", "text"],
];

export async function render(main, _params, query) {
  const inputs = CRITERIA.map(([name, label, hint, type]) =>
    field(label, h("input", { name, type, value: query.get(name) || "", autocomplete: "off" }), hint),
  );
  const searchForm = form(
    { class: "search-form", role: "search", "aria-label": "Find a customer" },
    [h("div", { class: "grid-fields" }, inputs), h("button", { type: "submit", class: "primary" }, "Search")],
    async (data, status) => {
      const params = new URLSearchParams();
      for (const [name] of CRITERIA) {
        const v = String(data.get(name) || "").trim();
        if (v) params.set(name, v);
      }
      if (![...params.keys()].length) {
        status.append(h("div", { class: "error-box", role: "alert" }, "Give a name, e-mail, phone, card or external id."));
        return;
      }
      window.location.hash = `#/customers?${params}`;
    },
  );
  const results = h("div", { id: "search-results", "aria-live": "polite" });
  page(main, "Customers", searchForm, results);
  const criteria = Object.fromEntries(CRITERIA.map(([n]) => [n, query.get(n)]).filter(([, v]) => v));
  if (!Object.keys(criteria).length) {
    results.append(empty("Search by name, e-mail, phone, card or external id to open a customer's 360 view."));
    main.querySelector("input").focus();
    return;
  }
  await showResults(results, criteria);
}

async function showResults(results, criteria, cursor = null) {
  let body;
  try {
    body = await get("/api/identity/customers", { ...criteria, limit: 25, cursor });
  } catch (error) {
    results.append(errorBox(error));
    return;
  }
  const items = body.items || [];
  if (!items.length && !cursor) {
    results.append(empty("No customer matches. Check the spelling, or search by another identifier."));
    return;
  }
  const rows = table(
    cursor ? null : `${items.length}${body.next_cursor ? "+" : ""} customer(s) found`,
    [
      { label: "Name", render: (c) => h("a", { href: `#/customers/${encodeURIComponent(c.id)}` }, customerName(c)) },
      { label: "E-mail", render: (c) => c.email || "—" },
      { label: "Phone", render: (c) => c.phone || "—" },
      { label: "Kind", render: (c) => c.kind },
      { label: "Status", render: (c) => c.status },
    ],
    items,
    { class: "results" },
  );
  results.append(cursor ? section("More results", rows) : rows);
  if (body.next_cursor) {
    const more = h("button", { type: "button", class: "secondary" }, "More results");
    more.addEventListener("click", () => {
      more.remove();
      showResults(results, criteria, body.next_cursor);
    });
    results.append(more);
  }
}
