// Loyalty: programs, earning rules with a dry run on a sample purchase, the rewards catalogue (stock,
// blackout dates), tier rules, and finding a member by card. Points are adjusted, reversed and
// redeemed from the member's customer 360 page.

import { get, post, put } from "../api.js";
import { badge, clear, dl, empty, errorBox, field, fmtDay, fmtMoney, fmtNumber, form, h, page, section, select, table, toast } from "../dom.js";
import { can } from "../roles.js";

const RULE_TEMPLATES = {
  multiplier: { factor: { numerator: 2, denominator: 1 }, conditions: { channels: ["web"] } },
  bonus_points: { points: 50, per: "unit", conditions: { categories: ["shoes"] } },
  event_bonus: { event: "referral_referrer", points: 500, limit: { count: 5, period: "month" } },
  cap: { max_points: 5000, period: "month", applies_to: ["purchase", "bonus"] },
};
const REWARD_KINDS = ["discount", "voucher", "free_product", "upgrade", "experience", "partner"];

export async function render(main, params) {
  const programs = await get("/api/loyalty/programs");
  if (!params.program) {
    if (programs.length === 1 && !can("loyalty.configure")) {
      window.location.replace(`#/loyalty/${encodeURIComponent(programs[0].id)}`);
      return;
    }
    page(
      main,
      "Loyalty programs",
      programs.length
        ? table(`${programs.length} program(s)`, [
            { label: "Program", render: (p) => h("a", { href: `#/loyalty/${encodeURIComponent(p.id)}` }, p.name) },
            { label: "Id", render: (p) => h("code", {}, p.id) },
            { label: "Status", render: (p) => badge(p.status) },
            { label: "Earning", render: (p) => `${p.points_per_unit} point(s) per ${p.currency || "currency unit"}` },
            { label: "Expiry", render: (p) => p.expiry_policy.replace(/_/g, " ") + (p.expiry_period ? ` (${p.expiry_period})` : "") },
          ], programs)
        : empty("No loyalty program yet."),
      can("loyalty.configure") ? newProgramForm() : null,
      memberLookup(),
    );
    return;
  }
  const program = programs.find((p) => p.id === params.program) || (await get(`/api/loyalty/programs/${encodeURIComponent(params.program)}`));
  const pid = encodeURIComponent(program.id);
  const rulesBox = h("div", {});
  const rewardsBox = h("div", {});
  const tiersBox = h("div", {});
  page(
    main,
    program.name,
    h("p", {}, h("a", { href: "#/loyalty" }, "← All programs")),
    h(
      "nav",
      { class: "toc", "aria-label": "Sections of this program" },
      h("ul", {}, [["prog-settings", "Settings"], ["prog-rules", "Earning rules"], ["prog-dryrun", "Dry run"], ["prog-rewards", "Rewards"], ["prog-tiers", "Tiers"], ["prog-member", "Find a member"]].map(([id, label]) => h("li", {}, h("a", { href: `#/loyalty/${pid}`, onclick: (e) => { e.preventDefault(); const t = document.getElementById(id); t.setAttribute("tabindex", "-1"); t.focus(); } }, label)))),
    ),
    h(
      "div",
      { class: "columns" },
      withId(section("Settings", dl([
        ["Id", h("code", {}, program.id)],
        ["Status", program.status],
        ["Earning", `${program.points_per_unit} point(s) per whole ${program.currency || "currency unit"}`],
        ["Pending days", program.pending_days],
        ["Expiry", program.expiry_policy.replace(/_/g, " ") + (program.expiry_period ? ` (${program.expiry_period})` : "")],
        ["Negative balance", program.negative_policy === "never" ? "never" : `down to −${program.negative_limit}`],
        ["Timezone", program.timezone],
      ])), "prog-settings"),
      withId(section("Dry run: what a purchase would earn", dryRunForm(program)), "prog-dryrun"),
    ),
    withId(section("Earning rules", rulesBox), "prog-rules"),
    withId(section("Rewards", rewardsBox), "prog-rewards"),
    withId(section("Tiers", tiersBox), "prog-tiers"),
    withId(memberLookup(), "prog-member"),
  );
  await Promise.all([loadRules(program, rulesBox), loadRewards(program, rewardsBox), loadTiers(program, tiersBox)]);
}

function withId(el, id) {
  el.id = id;
  return el;
}

function newProgramForm() {
  return h(
    "details",
    {},
    h("summary", {}, "Create a program"),
    form(
      { "aria-label": "Create a program" },
      [
        h("div", { class: "grid-fields" },
          field("Id", h("input", { name: "id", required: true, pattern: "[a-z0-9][a-z0-9_\\-]{1,39}" }), "lower case letters, digits, - and _"),
          field("Name", h("input", { name: "name", required: true })),
          field("Currency", h("input", { name: "currency", value: "EUR", maxlength: "3" })),
          field("Points per unit", h("input", { name: "points_per_unit", type: "number", min: "1", value: "1" })),
        ),
        h("button", { type: "submit", class: "primary" }, "Create program"),
      ],
      async (data) => {
        const created = await post("/api/loyalty/programs", {
          id: data.get("id"),
          name: data.get("name"),
          currency: data.get("currency") || null,
          points_per_unit: Number(data.get("points_per_unit") || 1),
        });
        toast(`Program ${created.name} created.`);
        window.location.hash = `#/loyalty/${encodeURIComponent(created.id)}`;
      },
    ),
  );
}

function memberLookup() {
  const result = h("div", { "aria-live": "polite" });
  return section(
    "Find a member",
    h("p", {}, "Points are adjusted, reversed and redeemed from the member's customer page."),
    form(
      { class: "card-lookup", role: "search", "aria-label": "Find a member by card" },
      [field("Loyalty card number", h("input", { name: "card", required: true, inputmode: "numeric" })), h("button", { type: "submit", class: "secondary" }, "Find")],
      async (data) => {
        clear(result);
        const card = String(data.get("card") || "").trim();
        if (!card) return;
        const member = await get(`/api/loyalty/cards/${encodeURIComponent(card)}`);
        result.append(
          dl([
            ["Program", member.program_id],
            ["Points available", fmtNumber(member.balances && member.balances.available)],
            ["Tier", member.tier || "none"],
            ["Status", member.status],
          ]),
          h("a", { href: `#/customers/${encodeURIComponent(member.customer_id)}` }, "Open the customer's 360 (points, rewards, history)"),
        );
      },
    ),
    result,
  );
}

async function loadRules(program, box) {
  const pid = encodeURIComponent(program.id);
  let rules;
  try {
    rules = await get(`/api/loyalty/programs/${pid}/rules`, { include_inactive: true });
  } catch (error) {
    box.append(errorBox(error));
    return;
  }
  box.append(
    h("p", {}, `Base rate: ${program.points_per_unit} point(s) per whole ${program.currency || "currency unit"}, then these rules by priority.`),
    rules.length
      ? table(null, [
          { label: "Name", render: (r) => r.name },
          { label: "Kind", render: (r) => r.kind.replace("_", " ") },
          { label: "Priority", render: (r) => r.priority },
          { label: "Definition", render: (r) => h("code", {}, JSON.stringify(r.definition)) },
          { label: "Valid", render: (r) => `${r.valid_from ? fmtDay(r.valid_from) : "always"} – ${r.valid_until ? fmtDay(r.valid_until) : "open"}` },
          { label: "Active", render: (r) => badge(r.active ? "active" : "inactive", r.active ? "ok" : "") },
        ], rules)
      : empty("No earning rule: only the base rate applies."),
  );
  if (!can("loyalty.configure")) return;
  const kind = select("kind", Object.keys(RULE_TEMPLATES), "multiplier");
  const definition = h("textarea", { name: "definition", rows: "4", class: "mono" });
  definition.value = JSON.stringify(RULE_TEMPLATES.multiplier, null, 1);
  kind.addEventListener("change", () => { definition.value = JSON.stringify(RULE_TEMPLATES[kind.value], null, 1); });
  box.append(
    h(
      "details",
      {},
      h("summary", {}, "Add an earning rule"),
      form(
        { "aria-label": "Add an earning rule" },
        [
          h("div", { class: "grid-fields" }, field("Name", h("input", { name: "name", required: true })), field("Kind", kind), field("Priority", h("input", { name: "priority", type: "number", value: "100" }))),
          field("Definition (JSON)", definition, "The template shows the keys this kind takes"),
          h("button", { type: "submit", class: "primary" }, "Add rule"),
        ],
        async (data) => {
          let def;
          try {
            def = JSON.parse(String(data.get("definition")));
          } catch (e) {
            throw Object.assign(new Error(e.message), { title: "Invalid JSON", detail: `the definition is not valid JSON (${e.message})` });
          }
          await post(`/api/loyalty/programs/${encodeURIComponent(program.id)}/rules`, { name: data.get("name"), kind: data.get("kind"), priority: Number(data.get("priority") || 100), definition: def });
          toast("Rule added.");
          window.dispatchEvent(new HashChangeEvent("hashchange"));
        },
      ),
    ),
  );
}

function dryRunForm(program) {
  const result = h("div", { "aria-live": "polite", id: "dry-run-result" });
  return h(
    "div",
    {},
    form(
      { class: "dry-run", "aria-label": "Dry run" },
      [
        h(
          "div",
          { class: "grid-fields" },
          field("Amount", h("input", { name: "amount", type: "number", step: "0.01", min: "0", value: "50.00", required: true })),
          field("Currency", h("input", { name: "currency", value: program.currency || "EUR", maxlength: "3" })),
          field("Channel", select("channel", ["store", "web", "app", "phone"], "store")),
          field("Category", h("input", { name: "category", value: "shoes" })),
          field("Customer id (optional)", h("input", { name: "customer_id" }), "Applies the customer's tier and segments"),
        ),
        h("button", { type: "submit", class: "secondary" }, "Try it"),
      ],
      async (data) => {
        clear(result);
        const total = Math.round(Number(data.get("amount")) * 100);
        const out = await post(`/api/loyalty/programs/${encodeURIComponent(program.id)}/dry-run`, {
          customer_id: data.get("customer_id") || null,
          purchase: {
            currency: String(data.get("currency") || "EUR").toUpperCase(),
            total_minor: total,
            channel: data.get("channel"),
            lines: [{ sku: "SAMPLE", category: data.get("category") || null, quantity: 1, unit_price_minor: total }],
          },
        });
        result.append(
          h("p", { class: "count" }, h("strong", {}, `${fmtNumber(out.points)} point(s)`), ` would be earned (${fmtNumber(out.qualifying)} qualifying)${out.tier ? ` at tier ${out.tier}` : ""}.`),
          table("Rules that fired", [
            { label: "Rule", render: (r) => r.name },
            { label: "Points", render: (r) => (r.points > 0 ? `+${r.points}` : String(r.points)) },
            { label: "Why", render: (r) => r.detail },
          ], out.rules || []),
        );
      },
    ),
    result,
  );
}

async function loadRewards(program, box) {
  const pid = encodeURIComponent(program.id);
  let rewards;
  try {
    rewards = await get(`/api/loyalty/programs/${pid}/rewards`);
  } catch (error) {
    box.append(errorBox(error));
    return;
  }
  box.append(
    rewards.length
      ? table(null, [
          { label: "Reward", render: (r) => r.name },
          { label: "Kind", render: (r) => r.kind.replace("_", " ") },
          { label: "Cost", render: (r) => `${fmtNumber(r.cost_points)} pts${r.cash_minor ? ` + ${fmtMoney(r.cash_minor, r.currency)}` : ""}${r.fees_minor ? ` (fee ${fmtMoney(r.fees_minor, r.currency)})` : ""}` },
          { label: "Stock", render: (r) => (r.stock === null ? "unlimited" : `${fmtNumber(r.available)} left${r.reserved ? ` (+${fmtNumber(r.reserved)} reserved)` : ""}`) },
          { label: "Blackout dates", render: (r) => (r.blackout_dates.length ? r.blackout_dates.map((b) => `${fmtDay(b.from)} – ${fmtDay(b.until)}`).join("; ") : "none") },
          { label: "Limit", render: (r) => (r.per_member_limit ? `${r.per_member_limit} per member per ${r.limit_period}` : "none") },
          { label: "Status", render: (r) => badge(r.status, r.status === "active" ? "ok" : "") },
        ], rewards, { class: "rewards" })
      : empty("The catalogue is empty."),
  );
  if (!can("loyalty.configure")) return;
  box.append(
    h(
      "details",
      {},
      h("summary", {}, "Add a reward"),
      form(
        { "aria-label": "Add a reward" },
        [
          h(
            "div",
            { class: "grid-fields" },
            field("Name", h("input", { name: "name", required: true })),
            field("Kind", select("kind", REWARD_KINDS, "voucher")),
            field("Cost in points", h("input", { name: "cost_points", type: "number", min: "1", required: true })),
            field("Stock (empty: unlimited)", h("input", { name: "stock", type: "number", min: "0" })),
            field("Blackout from", h("input", { name: "blackout_from", type: "date" })),
            field("Blackout until", h("input", { name: "blackout_until", type: "date" })),
          ),
          field("Terms shown to members", h("textarea", { name: "terms", rows: "2" })),
          h("button", { type: "submit", class: "primary" }, "Add reward"),
        ],
        async (data) => {
          const from = data.get("blackout_from");
          const until = data.get("blackout_until");
          await post(`/api/loyalty/programs/${pid}/rewards`, {
            name: data.get("name"),
            kind: data.get("kind"),
            cost_points: Number(data.get("cost_points")),
            stock: data.get("stock") === "" ? null : Number(data.get("stock")),
            terms: data.get("terms") || null,
            blackout_dates: from && until ? [{ from, until }] : [],
          });
          toast("Reward added.");
          window.dispatchEvent(new HashChangeEvent("hashchange"));
        },
      ),
    ),
  );
}

async function loadTiers(program, box) {
  const pid = encodeURIComponent(program.id);
  let tiers;
  try {
    tiers = await get(`/api/loyalty/programs/${pid}/tiers`);
  } catch (error) {
    box.append(errorBox(error));
    return;
  }
  const list = tiers.tiers || [];
  box.append(
    list.length
      ? table(`Reviewed with ${tiers.grace_days} grace day(s); members warned ${tiers.warning_days} day(s) ahead`, [
          { label: "Tier", render: (t) => t.name },
          { label: "Qualifies at", render: (t) => `${fmtNumber(t.threshold)} ${String(t.measure || "").replace(/_/g, " ")}` },
          { label: "Window", render: (t) => (t.window ? (t.window.kind === "rolling_days" ? `last ${t.window.days} days` : t.window.kind.replace(/_/g, " ")) : "—") },
          { label: "Benefits", render: (t) => benefits(t.benefits || {}) },
        ], list)
      : empty("No tiers: every member is treated alike."),
  );
  if (!can("loyalty.configure")) return;
  const text = h("textarea", { name: "tiers", rows: "8", class: "mono" });
  text.value = JSON.stringify(list.length ? list : [{ name: "silver", threshold: 1000, measure: "qualifying_points", window: { kind: "rolling_days", days: 365 }, benefits: { earn_multiplier: { numerator: 5, denominator: 4 } } }], null, 1);
  box.append(
    h(
      "details",
      {},
      h("summary", {}, "Edit the tier rules"),
      form(
        { "aria-label": "Edit the tier rules" },
        [field("Tiers, lowest first (JSON)", text, "Each: name, threshold, measure (qualifying_points | spend_minor), window, benefits"), h("button", { type: "submit", class: "primary" }, "Save tiers")],
        async (data) => {
          let parsed;
          try {
            parsed = JSON.parse(String(data.get("tiers")));
          } catch (e) {
            throw Object.assign(new Error(e.message), { title: "Invalid JSON", detail: `the tiers are not valid JSON (${e.message})` });
          }
          await put(`/api/loyalty/programs/${pid}/tiers`, { tiers: parsed, grace_days: tiers.grace_days, warning_days: tiers.warning_days });
          toast("Tiers saved.");
          window.dispatchEvent(new HashChangeEvent("hashchange"));
        },
      ),
    ),
  );
}

function benefits(b) {
  const out = [];
  if (b.earn_multiplier) out.push(`earn ×${b.earn_multiplier.numerator}/${b.earn_multiplier.denominator}`);
  if (b.reward_access && b.reward_access.length) out.push(`rewards: ${b.reward_access.join(", ")}`);
  if (b.perks && b.perks.length) out.push(`perks: ${b.perks.join(", ")}`);
  return out.join("; ") || "—";
}

