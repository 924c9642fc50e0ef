// The customer 360: everything the platform knows about one customer, from GET /api/customers/{id}/360
// plus the lineage, the full timeline and the points history.

import { ApiError, get, post } from "../api.js";
import {
  badge,
  button,
  clear,
  customerName,
  dl,
  empty,
  errorBox,
  field,
  fmtDate,
  fmtDay,
  fmtMoney,
  fmtNumber,
  form,
  h,
  page,
  section,
  select,
  table,
  toast,
} from "../dom.js";
import { can } from "../roles.js";

const CHANNELS = ["store", "phone", "email", "web", "chat", "sms", "direct_mail", "fax", "kiosk", "app", "social", "field_visit"];

export async function render(main, params) {
  const id = params.id;
  let c360;
  try {
    c360 = await get(`/api/customers/${encodeURIComponent(id)}/360`);
  } catch (error) {
    const title = error instanceof ApiError && error.status === 410 ? "Customer erased" : "Customer not available";
    page(main, title, errorBox(error), h("p", {}, h("a", { href: "#/customers" }, "Back to search")));
    return;
  }
  if (c360.customer_id !== id) {
    // A merged id: show the survivor under its own address.
    window.location.replace(`#/customers/${encodeURIComponent(c360.customer_id)}`);
    return;
  }
  const profile = c360.profile;
  const unavailable = Object.entries(c360.parts || {}).filter(([, s]) => s === "unavailable").map(([p]) => p);
  page(
    main,
    customerName(profile),
    h(
      "p",
      { class: "subtitle" },
      badge(profile.kind),
      " ",
      badge(profile.status),
      " ",
      c360.ladder_stage ? badge(`ladder: ${c360.ladder_stage}`, "info") : null,
      " ",
      c360.value && c360.value.value_tier ? badge(`value: ${c360.value.value_tier}`, "info") : null,
      " ",
      c360.risk ? badge(`risk: ${c360.risk.level}`, `risk-${c360.risk.level}`) : null,
    ),
    c360.resolved_from ? h("p", { class: "notice" }, `Opened from merged id ${c360.resolved_from}.`) : null,
    unavailable.length
      ? h("p", { class: "notice", role: "status" }, `Not available right now: ${unavailable.join(", ")} (the service is down or slow).`)
      : null,
    h(
      "nav",
      { class: "toc", "aria-label": "Sections of this customer" },
      h(
        "ul",
        {},
        [
          ["profile", "Profile"],
          ["lineage", "Golden record"],
          ["value", "Value & risk"],
          ["segments", "Segments"],
          ["loyalty", "Loyalty"],
          ["complaints", "Complaints"],
          ["timeline", "Timeline"],
        ].map(([anchor, label]) => h("li", {}, h("a", { href: `#/customers/${encodeURIComponent(id)}`, "data-target": `sec-${anchor}`, onclick: jump }, label))),
      ),
    ),
    h(
      "div",
      { class: "columns" },
      profileSection(c360),
      valueSection(c360),
    ),
    lineageSection(id),
    segmentsSection(c360),
    loyaltySection(c360),
    complaintsSection(c360),
    timelineSection(id),
  );
}

function jump(event) {
  event.preventDefault();
  const target = document.getElementById(event.currentTarget.dataset.target);
  if (target) {
    target.setAttribute("tabindex", "-1");
    target.focus();
  }
}

function withId(sectionEl, id) {
  sectionEl.id = id;
  return sectionEl;
}

function profileSection(c360) {
  const p = c360.profile;
  const consents = (c360.consents && c360.consents.consents) || [];
  const prefs = (c360.consents && c360.consents.preferences) || {};
  return withId(
    section(
      "Profile",
      dl([
        ["Customer id", h("code", {}, p.id)],
        ["E-mail", p.email],
        ["Phone", p.phone],
        ["Birth date", p.birth_date ? fmtDay(p.birth_date) : null],
        ["Language", p.language],
        ["Source", p.source_system],
        ["Registered", fmtDate(p.created_at)],
        ["Address", (p.addresses || []).map((a) => [a.street, a.locality, a.postcode, a.country].filter(Boolean).join(", ")).join(" · ") || null],
      ]),
      h("h3", {}, "Identifiers"),
      c360.identifiers.length
        ? h("ul", { class: "identifiers" }, c360.identifiers.map((i) => h("li", {}, badge(i.kind), " ", h("code", {}, i.value))))
        : empty("No identifier known."),
      h("h3", {}, "Consents and contact preferences"),
      c360.consents === null
        ? empty("Consents are not available right now.")
        : consents.length
          ? table(null, [
              { label: "Channel", render: (x) => x.channel },
              { label: "Purpose", render: (x) => x.purpose },
              { label: "Status", render: (x) => badge(x.status, x.status === "granted" ? "ok" : "warn") },
              { label: "Since", render: (x) => fmtDate(x.updated_at || x.recorded_at || x.at) },
            ], consents)
          : empty("No consent recorded: the customer has not been asked yet."),
      prefs.do_not_contact ? h("p", { class: "notice" }, "Do not contact.") : null,
      prefs.preferred_channel ? h("p", {}, `Preferred channel: ${prefs.preferred_channel}`) : null,
    ),
    "sec-profile",
  );
}

function valueSection(c360) {
  const v = c360.value;
  if (!v) {
    return withId(section("Value & risk", empty(c360.parts.value === "unavailable" ? "Segmentation is not available right now." : "No value computed yet for this customer.")), "sec-value");
  }
  const rfm = v.rfm || {};
  const clv = v.clv || {};
  const risk = c360.risk || { reasons: [] };
  return withId(
    section(
      "Value & risk",
      dl([
        ["Value tier", v.value_tier],
        ["RFM (recency / frequency / monetary)", [rfm.recency, rfm.frequency, rfm.monetary].map((x) => x ?? "—").join(" / ") + (rfm.segment ? ` — ${rfm.segment}` : "")],
        ["CLV, historic", fmtMoney(clv.historic_minor, clv.currency)],
        ["CLV, predicted", clv.predicted_minor === null || clv.predicted_minor === undefined ? "—" : fmtMoney(clv.predicted_minor, clv.currency)],
        ["Activity", v.lapsed ? "lapsed" : v.active ? "active" : "inactive"],
        ["Defection reason", v.defection_reason],
      ]),
      h("h3", {}, `Risk: ${risk.level ?? "—"} (score ${risk.score ?? "—"})`),
      risk.reasons && risk.reasons.length
        ? h("ul", { class: "reasons" }, risk.reasons.map((r) => h("li", {}, h("strong", {}, `+${r.points} ${r.component}`), ": ", r.explanation)))
        : empty("No risk signal."),
      h("h3", {}, `Loyalty ladder: ${c360.ladder_stage || "—"}`),
      v.stage_history && v.stage_history.length
        ? h(
            "ol",
            { class: "stage-history" },
            v.stage_history.map((s) => h("li", {}, `${fmtDate(s.at)}: ${s.from_stage || "—"} → `, h("strong", {}, s.to_stage), s.reason ? ` (${s.reason})` : "")),
          )
        : empty("No stage change yet."),
    ),
    "sec-value",
  );
}

function lineageSection(id) {
  const body = h("div", {}, h("p", { class: "loading" }, "Loading the source records…"));
  const sec = withId(section("Golden record: source records and merges", body), "sec-lineage");
  loadLineage(id, body);
  return sec;
}

async function loadLineage(id, body) {
  let lineage;
  try {
    lineage = await get(`/api/identity/customers/${encodeURIComponent(id)}/records`);
  } catch (error) {
    clear(body).append(errorBox(error));
    return;
  }
  clear(body);
  const provenance = Object.entries(lineage.provenance || {});
  const bySource = Object.fromEntries(lineage.records.map((r) => [r.id, r]));
  body.append(
    h("p", {}, `${lineage.records.length} source record(s) make up this customer.`),
    table("Where each field of the golden record comes from", [
      { label: "Field", render: ([f]) => f },
      { label: "Source", render: ([, p]) => (bySource[p.source_record_id] ? `${bySource[p.source_record_id].source_system}:${bySource[p.source_record_id].source_id}` : p.source_system) },
      { label: "Why this value", render: ([, p]) => (p.rule || "").replace(/_/g, " ") },
    ], provenance),
    table("Source records", [
      { label: "System", render: (r) => r.source_system },
      { label: "Source id", render: (r) => r.source_id },
      { label: "Trust", render: (r) => r.trust },
      { label: "Observed", render: (r) => fmtDate(r.observed_at) },
      { label: "Data", render: (r) => Object.entries(r.data).filter(([k]) => !["source_system", "source_id", "kind", "status"].includes(k)).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ") },
      { label: "Came from", render: (r) => (r.origin_customer_id !== lineage.customer_id ? h("code", {}, r.origin_customer_id) : "this customer") },
    ], lineage.records),
    h("h3", {}, "Merges"),
    lineage.merges.length
      ? table(null, [
          { label: "When", render: (m) => fmtDate(m.created_at) },
          { label: "Absorbed", render: (m) => h("code", {}, m.absorbed_id) },
          { label: "How", render: (m) => `${m.method}${m.score !== null && m.score !== undefined ? ` (score ${(m.score * 100).toFixed(1)}%)` : ""}` },
          { label: "Why", render: (m) => [m.reason || "", m.evidence && m.evidence.length ? ` — ${m.evidence.filter((e) => e.weight > 0).map((e) => `${e.field} ${e.level}`).join(", ")}` : ""].join("") || "—" },
          { label: "By", render: (m) => m.actor || "—" },
          { label: "Action", render: (m) => (m.undone_at ? `undone ${fmtDate(m.undone_at)}` : unmergeButton(lineage.customer_id, m)) },
        ], lineage.merges)
      : empty("Never merged: this customer was always one record."),
  );
}

function unmergeButton(customerId, merge) {
  if (!can("customers.merge")) return "—";
  return button("Unmerge", async (event) => {
    const b = event.currentTarget;
    if (!window.confirm(`Undo this merge? ${merge.absorbed_id} becomes a customer of its own again.`)) return;
    b.disabled = true;
    try {
      await post(`/api/identity/customers/${encodeURIComponent(customerId)}/unmerge`, { merge_id: merge.id, reason: "undone from the staff console" });
      toast("Merge undone.");
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (error) {
      b.disabled = false;
      b.after(errorBox(error));
    }
  }, { class: "danger" });
}

function segmentsSection(c360) {
  const items = c360.segments;
  return withId(
    section(
      "Segments",
      items === null
        ? empty("Segments are not available right now.")
        : items.length
          ? h("ul", { class: "chips" }, items.map((s) => h("li", {}, can("segments.read") ? h("a", { href: `#/segments/${encodeURIComponent(s.segment_id)}` }, s.name) : s.name, ` since ${fmtDay(s.since)}`)))
          : empty("In no segment."),
    ),
    "sec-segments",
  );
}

function loyaltySection(c360) {
  const loyalty = c360.loyalty;
  const body = h("div", {});
  const sec = withId(section("Loyalty", body), "sec-loyalty");
  if (!loyalty) {
    body.append(empty(c360.parts.loyalty === "unavailable" ? "Loyalty is not available right now." : "Not a loyalty member."));
    return sec;
  }
  if (!loyalty.memberships.length) {
    body.append(empty("Not a member of any loyalty program."));
    return sec;
  }
  for (const m of loyalty.memberships) {
    body.append(membershipBlock(m));
  }
  return sec;
}

function membershipBlock(m) {
  const b = m.balances || {};
  const block = h(
    "div",
    { class: "membership" },
    h("h3", {}, `Program “${m.program_id}”`),
    dl([
      ["Points available", h("strong", { class: "points", "data-program": m.program_id }, fmtNumber(b.available))],
      ["Pending / reserved", `${fmtNumber(b.pending)} / ${fmtNumber(b.reserved)}`],
      ["Tier", m.tier || "none"],
      ["Card", m.card_number ? `${m.card_number} (${m.card_status})` : null],
      ["Status", m.status],
      ["Member since", fmtDay(m.enrolled_at)],
    ]),
  );
  const tx = h("div", {}, h("p", { class: "loading" }, "Loading the points history…"));
  const actions = h("div", { class: "columns" });
  block.append(actions, h("h4", {}, "Points history"), tx);
  loadTransactions(m, tx);
  const refresh = async () => {
    loadTransactions(m, tx);
    try {
      const member = await get(`/api/loyalty/programs/${encodeURIComponent(m.program_id)}/members/${encodeURIComponent(m.id)}`);
      block.querySelector(".points").textContent = fmtNumber(member.balances.available);
    } catch {
      /* the balance refreshes on the next visit */
    }
  };
  if (can("loyalty.points")) {
    actions.append(redeemForm(m, refresh), adjustForm(m, refresh));
  }
  return block;
}

async function loadTransactions(m, container) {
  let items;
  try {
    items = await get(`/api/loyalty/programs/${encodeURIComponent(m.program_id)}/members/${encodeURIComponent(m.id)}/transactions`, { limit: 50 });
  } catch (error) {
    clear(container).append(errorBox(error));
    return;
  }
  clear(container).append(
    items.length
      ? table(null, [
          { label: "When", render: (t) => fmtDate(t.created_at) },
          { label: "Kind", render: (t) => t.kind },
          { label: "Points", render: (t) => h("span", { class: t.points < 0 ? "neg" : "pos" }, t.points > 0 ? `+${t.points}` : String(t.points)) },
          { label: "Reason", render: (t) => t.reason || t.reference || "—" },
          { label: "By", render: (t) => t.actor || "—" },
          { label: "Action", render: (t) => (can("loyalty.points") && !t.reverses_id && ["earn", "adjust", "bonus"].includes(t.kind) ? reverseButton(t) : "—") },
        ], items, { class: "transactions" })
      : empty("No points movement yet."),
  );
}

function reverseButton(t) {
  return button(`Reverse`, async (event) => {
    const b = event.currentTarget;
    const reason = window.prompt("Why reverse this transaction? (required)");
    if (!reason) return;
    b.disabled = true;
    try {
      await post(`/api/loyalty/transactions/${encodeURIComponent(t.transaction_id)}/reversal`, { reason });
      toast("Transaction reversed.");
      window.dispatchEvent(new HashChangeEvent("hashchange"));
    } catch (error) {
      b.disabled = false;
      b.after(errorBox(error));
    }
  }, { class: "secondary", "aria-label": `Reverse ${t.kind} of ${t.points} points on ${fmtDate(t.created_at)}` });
}

function adjustForm(m, refresh) {
  const points = h("input", { name: "points", type: "number", step: "1", required: true });
  const reason = h("input", { name: "reason", required: true, maxlength: "500" });
  return h(
    "div",
    { class: "card inner" },
    h("h4", {}, "Adjust points"),
    form(
      { class: "adjust-form", "aria-label": "Adjust points" },
      [field("Points (negative to remove)", points), field("Reason", reason, "Kept in the audit trail"), h("button", { type: "submit", class: "primary" }, "Adjust")],
      async (data, status) => {
        const n = Number.parseInt(String(data.get("points")), 10);
        const why = String(data.get("reason") || "").trim();
        if (!Number.isFinite(n) || n === 0 || !why) {
          status.append(h("div", { class: "error-box", role: "alert" }, "Give a non-zero number of points and a reason."));
          return;
        }
        await post(`/api/loyalty/programs/${encodeURIComponent(m.program_id)}/members/${encodeURIComponent(m.id)}/adjustments`, { points: n, reason: why });
        clear(status).append(h("p", { class: "success", role: "status" }, `Adjusted by ${n} points.`));
        await refresh();
      },
    ),
  );
}

function redeemForm(m, refresh) {
  const container = h("div", { class: "card inner" }, h("h4", {}, "Redeem a reward"), h("p", { class: "loading" }, "Loading the catalogue…"));
  (async () => {
    let catalogue;
    try {
      catalogue = await get(`/api/loyalty/programs/${encodeURIComponent(m.program_id)}/members/${encodeURIComponent(m.id)}/catalogue`);
    } catch (error) {
      container.lastChild.replaceWith(errorBox(error));
      return;
    }
    const items = catalogue.items || [];
    if (!items.length) {
      container.lastChild.replaceWith(empty("The catalogue has no reward."));
      return;
    }
    const choice = select(
      "reward_id",
      items.map((i) => [i.reward.id, `${i.reward.name} — ${i.reward.cost_points} pts${i.redeemable ? "" : " (not redeemable)"}`]),
      (items.find((i) => i.redeemable) || items[0]).reward.id,
    );
    const why = h("div", { class: "hint", "aria-live": "polite" });
    const explain = () => {
      const item = items.find((i) => i.reward.id === choice.value);
      clear(why).append(item && !item.redeemable ? `Not redeemable: ${(item.reasons || []).map((r) => r.detail).join("; ")}` : "");
    };
    choice.addEventListener("change", explain);
    explain();
    container.lastChild.replaceWith(
      form(
        { class: "redeem-form", "aria-label": "Redeem a reward" },
        [field("Reward", choice), why, h("button", { type: "submit", class: "primary" }, "Redeem now")],
        async (data, status) => {
          const redemption = await post(`/api/loyalty/programs/${encodeURIComponent(m.program_id)}/members/${encodeURIComponent(m.id)}/redemptions`, { reward_id: data.get("reward_id"), confirm: true });
          clear(status).append(h("p", { class: "success", role: "status" }, `Redeemed: ${redemption.points} points. Voucher code `, h("strong", { class: "voucher" }, redemption.voucher_code || "—"), "."));
          toast("Reward redeemed.");
          await refresh();
        },
      ),
    );
  })();
  return container;
}

function complaintsSection(c360) {
  const items = c360.open_complaints;
  const body = h("div", {});
  body.append(
    items === null
      ? empty("Complaints are not available right now.")
      : items.length
        ? table(null, [
            { label: "Subject", render: (c) => (can("complaints.read") ? h("a", { href: `#/complaints/${encodeURIComponent(c.id)}` }, c.subject) : c.subject) },
            { label: "Status", render: (c) => badge(c.status) },
            { label: "Priority", render: (c) => c.priority },
            { label: "Due", render: (c) => fmtDate(c.next_due_at) },
          ], items)
        : empty("No open complaint."),
  );
  if (can("complaints.open")) body.append(openComplaintForm(c360.customer_id));
  return withId(section("Open complaints", body), "sec-complaints");
}

function openComplaintForm(customerId) {
  return h(
    "details",
    {},
    h("summary", {}, "Open a complaint for this customer"),
    form(
      { class: "open-complaint", "aria-label": "Open a complaint" },
      [
        h(
          "div",
          { class: "grid-fields" },
          field("Subject", h("input", { name: "subject", required: true, maxlength: "200" })),
          field("Category", h("input", { name: "category", required: true, value: "general", pattern: "[a-z0-9][a-z0-9_\\-]*" }), "lower case, e.g. delivery"),
          field("Channel", select("channel", CHANNELS, "phone")),
          field("Priority", select("priority", ["low", "normal", "high", "urgent"], "normal")),
        ),
        field("The customer's words", h("textarea", { name: "description", rows: "3" })),
        h("button", { type: "submit", class: "primary" }, "Open complaint"),
      ],
      async (data) => {
        const created = await post("/api/interactions/complaints", {
          customer_id: customerId,
          subject: data.get("subject"),
          category: data.get("category"),
          channel: data.get("channel"),
          priority: data.get("priority"),
          description: data.get("description") || null,
        });
        toast("Complaint opened.");
        window.location.hash = `#/complaints/${encodeURIComponent(created.id)}`;
      },
    ),
  );
}

const KIND_ICON = { purchase: "🛒", complaint: "⚠", refund: "↩", survey_answer: "★", communication: "✉" };

function timelineSection(id) {
  const list = h("ol", { class: "timeline" });
  const more = h("div", {});
  const sec = withId(section("Timeline", list, more), "sec-timeline");
  loadTimeline(id, list, more, null);
  return sec;
}

async function loadTimeline(id, list, more, cursor) {
  clear(more);
  let body;
  try {
    body = await get(`/api/interactions/customers/${encodeURIComponent(id)}/timeline`, { limit: 25, cursor });
  } catch (error) {
    more.append(errorBox(error));
    return;
  }
  const items = body.items || [];
  if (!items.length && !cursor) {
    list.replaceWith(empty("No contact, purchase or complaint recorded yet."));
    return;
  }
  for (const item of items) {
    list.append(
      h(
        "li",
        { class: `tl-${item.kind}` },
        h("span", { class: "tl-icon", "aria-hidden": "true" }, KIND_ICON[item.kind] || "•"),
        h("time", { datetime: item.occurred_at }, fmtDate(item.occurred_at)),
        " ",
        badge(item.kind.replace(/_/g, " ")),
        " ",
        badge(`${item.channel}${item.direction === "outbound" ? " · outbound" : ""}`),
        " ",
        item.summary || item.text || "",
      ),
    );
  }
  if (body.next_cursor) {
    more.append(button("Older entries", () => loadTimeline(id, list, more, body.next_cursor), { class: "secondary" }));
  }
}
