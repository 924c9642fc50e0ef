// The merge review queue: probable duplicates, most likely first; one review side by side with the
// per-field evidence, decided by merging or keeping apart. Past merges are undone from the survivor's
// 360 page (its "Golden record" section).

import { get, post } from "../api.js";
import { badge, customerName, empty, errorBox, field, fmtDate, form, h, page, table, toast } from "../dom.js";

const STATUSES = [
  ["pending", "Pending"],
  ["merged", "Merged"],
  ["kept_apart", "Kept apart"],
];

const FIELDS = [
  ["given_name", "Given name"],
  ["family_name", "Family name"],
  ["organisation_name", "Organisation"],
  ["email", "E-mail"],
  ["phone", "Phone"],
  ["birth_date", "Birth date"],
  ["address", "Address"],
  ["national_id", "National id"],
  ["gender", "Gender"],
  ["related", "Related records"],
];

function pct(p) {
  return `${(p * 100).toFixed(1)}%`;
}

export async function render(main, params, query) {
  if (params.id) {
    await renderOne(main, params.id);
    return;
  }
  const status = query.get("status") || "pending";
  const tabs = h(
    "nav",
    { class: "tabs", "aria-label": "Review status" },
    h("ul", {}, STATUSES.map(([s, label]) => h("li", {}, h("a", { href: `#/reviews?status=${s}`, "aria-current": s === status ? "page" : null }, label)))),
  );
  let items;
  try {
    items = await get("/api/identity/match-reviews", { status, limit: 100 });
  } catch (error) {
    page(main, "Merge review", tabs, errorBox(error));
    return;
  }
  page(
    main,
    "Merge review",
    h("p", {}, "Probable duplicates the matcher was not sure enough to merge on its own, most likely first."),
    tabs,
    items.length
      ? table(`${items.length} review(s)`, [
          { label: "Candidates", render: (r) => h("a", { href: `#/reviews/${encodeURIComponent(r.id)}` }, `${customerName(r.left)} ↔ ${customerName(r.right)}`) },
          { label: "Score", render: (r) => pct(r.probability) },
          { label: "Reason", render: (r) => r.reason },
          { label: "Queued", render: (r) => fmtDate(r.created_at) },
          { label: "Status", render: (r) => badge(r.status.replace("_", " ")) },
        ], items, { class: "reviews" })
      : empty(status === "pending" ? "Nothing to review: no probable duplicate is waiting." : "No review with this status."),
  );
}

async function renderOne(main, id) {
  const review = await get(`/api/identity/match-reviews/${encodeURIComponent(id)}`);
  const evidence = Object.fromEntries((review.evidence || []).map((e) => [e.field, e]));
  const value = (c, f) => {
    if (f === "address") return (c.addresses || []).map((a) => [a.street, a.locality, a.postcode, a.country].filter(Boolean).join(", ")).join(" · ") || "—";
    if (f === "related") return "";
    return c[f] || "—";
  };
  const rows = FIELDS.filter(([f]) => evidence[f] || value(review.left, f) !== "—" || value(review.right, f) !== "—");
  const comparison = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "compare" },
      h("caption", {}, `Match score ${pct(review.probability)} — ${review.reason}`),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Field"),
          h("th", { scope: "col" }, h("a", { href: `#/customers/${encodeURIComponent(review.left.id)}` }, customerName(review.left))),
          h("th", { scope: "col" }, h("a", { href: `#/customers/${encodeURIComponent(review.right.id)}` }, customerName(review.right))),
          h("th", { scope: "col" }, "Evidence"),
          h("th", { scope: "col" }, "Weight"),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map(([f, label]) => {
          const e = evidence[f] || { level: "—", weight: 0 };
          const kind = e.weight > 0 ? "ok" : e.weight < 0 ? "warn" : "";
          return h(
            "tr",
            { class: `evidence-${kind || "neutral"}` },
            h("th", { scope: "row" }, label),
            h("td", { "data-label": "Left" }, value(review.left, f)),
            h("td", { "data-label": "Right" }, value(review.right, f)),
            h("td", { "data-label": "Evidence" }, badge(e.level, kind)),
            h("td", { "data-label": "Weight" }, e.weight > 0 ? `+${e.weight.toFixed(2)}` : e.weight.toFixed(2)),
          );
        }),
      ),
    ),
  );
  const decided = review.status !== "pending";
  const reason = h("input", { name: "reason", maxlength: "500" });
  let decision = "merge";
  const decide = form(
    { class: "decision", "aria-label": "Decide this review" },
    [
      field("Reason (optional, kept in the audit trail)", reason),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary", name: "merge", onclick: () => { decision = "merge"; } }, "Merge"),
        h("button", { type: "submit", class: "secondary", name: "keep_apart", onclick: () => { decision = "keep_apart"; } }, "Keep apart"),
      ),
    ],
    async (data, status) => {
      const result = await post(`/api/identity/match-reviews/${encodeURIComponent(id)}/decision`, { decision, reason: data.get("reason") || null });
      const survivor = decision === "merge" ? await survivorOf(result) : null;
      toast(decision === "merge" ? "Merged." : "Kept apart.");
      status.append(
        h(
          "p",
          { class: "success", role: "status" },
          decision === "merge" ? "Merged into one customer. " : "Kept apart: they stay two customers. ",
          survivor ? h("a", { href: `#/customers/${encodeURIComponent(survivor)}` }, "Open the merged customer") : null,
          " · ",
          h("a", { href: "#/reviews" }, "Back to the queue"),
        ),
      );
      for (const b of decide.querySelectorAll("button")) b.remove();
    },
  );
  page(
    main,
    "Review a probable duplicate",
    h("p", {}, h("a", { href: "#/reviews" }, "← Back to the queue")),
    h("p", {}, `Status: `, badge(review.status.replace("_", " ")), decided ? ` — decided ${fmtDate(review.decided_at)}${review.decided_by ? ` by ${review.decided_by}` : ""}` : ""),
    comparison,
    decided
      ? h("p", {}, "Already decided. A merge can be undone from the merged customer's page (Golden record → Unmerge).")
      : decide,
  );
}

async function survivorOf(review) {
  try {
    const left = await get(`/api/identity/customers/${encodeURIComponent(review.left.id)}`);
    return left.id;
  } catch {
    return review.right.id;
  }
}
