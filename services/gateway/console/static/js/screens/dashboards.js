// Dashboards drawn as inline SVG from the analytics endpoints: retention cohorts, RFM distribution,
// ladder funnel, risk × value matrix, complaint SLA compliance, points liability. Each chart loads on
// its own, so one failing service (or a role without access) leaves the others in place.

import { get, post } from "../api.js";
import { barChart, hbarChart, heatmap, lineChart } from "../charts.js";
import { button, clear, empty, errorBox, fmtDay, fmtNumber, fmtPct, h, page, toast } from "../dom.js";
import { can } from "../roles.js";

const VALUE_TIERS = ["top", "high", "medium", "rest"];
const RISK_LEVELS = ["low", "medium", "high"];

function card(title, id) {
  const body = h("div", { class: "chart-body" }, h("p", { class: "loading" }, "Loading…"));
  const el = h("section", { class: "card chart-card", id, "aria-labelledby": `${id}-h` }, h("h2", { id: `${id}-h` }, title), body);
  return { el, body };
}

async function fill(body, load) {
  try {
    const content = await load();
    clear(body).append(...[content].flat().filter(Boolean));
  } catch (error) {
    clear(body).append(errorBox(error));
  }
}

const month = (iso) => new Date(`${iso.slice(0, 10)}T00:00:00Z`).toLocaleDateString(undefined, { month: "short", year: "2-digit", timeZone: "UTC" });

export async function render(main) {
  const cards = {
    cohorts: card("Retention by cohort", "dash-cohorts"),
    retention: card("Retention rate", "dash-retention"),
    rfm: card("RFM distribution", "dash-rfm"),
    ladder: card("Loyalty ladder funnel", "dash-ladder"),
    matrix: card("Risk × value", "dash-matrix"),
    sla: card("Complaint SLA compliance", "dash-sla"),
    liability: card("Points liability", "dash-liability"),
  };
  page(
    main,
    "Dashboards",
    can("values.recompute")
      ? h("p", {}, "Value, risk and ladder figures come from the scheduled value pass. ", button("Recompute now", async (event) => {
          event.currentTarget.disabled = true;
          try {
            await post("/api/segmentation/value/recompute");
            toast("Values recomputed.");
            window.dispatchEvent(new HashChangeEvent("hashchange"));
          } catch (error) {
            event.currentTarget.after(errorBox(error));
          }
        }, { class: "secondary" }))
      : null,
    h("div", { class: "dashboard" }, Object.values(cards).map((c) => c.el)),
  );
  await Promise.all([
    fill(cards.cohorts.body, cohorts),
    fill(cards.retention.body, retention),
    fill(cards.rfm.body, rfm),
    fill(cards.ladder.body, ladder),
    fill(cards.matrix.body, matrix),
    fill(cards.sla.body, sla),
    fill(cards.liability.body, liability),
  ]);
}

async function cohorts() {
  const data = await get("/api/segmentation/analytics/cohorts", { months: 6 });
  const rows = (data.cohorts || []).filter((c) => c.customers > 0);
  if (!rows.length) return empty("No purchase yet, so no cohort.");
  const width = Math.max(...rows.map((c) => c.retention.length));
  const cols = Array.from({ length: width }, (_, i) => `+${i}`);
  return heatmap(
    "Share of each month's new buyers who bought again N months later",
    rows.map((c) => `${month(c.month)} (${c.customers})`),
    cols,
    rows.map((c) => cols.map((_, i) => c.retention[i] ?? null)),
    { format: (v) => `${Math.round(v * 100)}%`, max: 1 },
  );
}

async function retention() {
  const data = await get("/api/segmentation/analytics/retention");
  const periods = data.periods || [];
  if (!periods.length) return empty("No purchase yet.");
  return lineChart(
    "Buyers of the previous month who bought again",
    periods.map((p) => ({ label: month(p.start), value: p.retention_rate })),
    { format: (v) => fmtPct(v), max: 1 },
  );
}

async function rfm() {
  const data = await get("/api/segmentation/reports/rfm-distribution");
  if (!data.customers_scored) return empty("No RFM scores yet: the value pass has not run, or no one has bought.");
  const bars = (title, scores) =>
    barChart(title, scores.map((s) => ({ label: String(s.score), value: s.customers })), { format: (v) => fmtNumber(Math.round(v)), integer: true });
  const named = Object.entries(data.segments || {});
  return [
    bars("Recency score (5 = bought most recently)", data.recency),
    bars("Frequency score (5 = buys most often)", data.frequency),
    bars("Monetary score (5 = spends most)", data.monetary),
    named.length
      ? hbarChart("Customers per RFM segment", named.map(([label, value]) => ({ label: label.replaceAll("_", " "), value })), { format: (v) => fmtNumber(v) })
      : null,
  ];
}

async function ladder() {
  const data = await get("/api/segmentation/reports/ladder");
  const stages = data.stages || [];
  if (!stages.some((s) => s.customers > 0)) return empty("No customer on the ladder yet.");
  return hbarChart(
    "Customers who reached each stage (or a higher one)",
    stages.map((s) => ({ label: s.stage, value: s.reached })),
    { format: (v) => fmtNumber(v), note: `Now at each stage: ${stages.map((s) => `${s.stage} ${s.customers}`).join(", ")}.` },
  );
}

async function matrix() {
  const data = await get("/api/segmentation/reports/risk-value-matrix");
  const cells = data.cells || [];
  if (!cells.some((c) => c.customers > 0)) return empty("No value computed yet: the value pass has not run.");
  const at = (tier, risk) => (cells.find((c) => c.value_tier === tier && c.risk_level === risk) || { customers: 0 }).customers;
  return heatmap(
    "Customers by value tier (rows) and abandonment risk (columns)",
    VALUE_TIERS,
    RISK_LEVELS,
    VALUE_TIERS.map((t) => RISK_LEVELS.map((r) => at(t, r))),
    { format: (v) => fmtNumber(v), note: "Top-value customers at high risk deserve attention first." },
  );
}

async function sla() {
  const data = await get("/api/interactions/reports/complaints");
  const total = data.total || {};
  const periods = (data.periods || []).filter((p) => p.first_response_sla.met + p.first_response_sla.missed + p.resolution_sla.met + p.resolution_sla.missed > 0);
  const summary = h(
    "p",
    {},
    `Last ${data.interval === "week" ? "weeks" : "periods"}: ${fmtNumber(total.opened)} opened, ${fmtNumber(total.resolved)} resolved. `,
    `First response on time: ${fmtPct(total.first_response_sla && total.first_response_sla.compliance)}; `,
    `resolution on time: ${fmtPct(total.resolution_sla && total.resolution_sla.compliance)}.`,
  );
  if (!periods.length) return [summary, empty("No complaint has reached a deadline yet.")];
  return [
    summary,
    barChart(
      "Share of deadlines met",
      periods.map((p) => ({ label: fmtDay(p.start), first: p.first_response_sla.compliance ?? 0, resolution: p.resolution_sla.compliance ?? 0 })),
      { format: (v) => fmtPct(v), series: [{ name: "first response", key: "first" }, { name: "resolution", key: "resolution" }] },
    ),
  ];
}

async function liability() {
  const data = await get("/api/loyalty/reports/liability");
  const programs = data.programs || [];
  if (!programs.length) return empty("No loyalty program.");
  const out = [
    barChart(
      "Points issued, redeemed, expired and outstanding, by program",
      programs.map((p) => ({ label: p.name, issued: p.issued, redeemed: p.redeemed, expired: p.expired, outstanding: p.outstanding })),
      {
        format: (v) => fmtNumber(Math.round(v)),
        integer: true,
        series: [{ name: "issued", key: "issued" }, { name: "redeemed", key: "redeemed" }, { name: "expired", key: "expired" }, { name: "outstanding", key: "outstanding" }],
        note: `As of ${fmtDay(data.as_of)}; ${data.total && data.total.balanced ? "the books balance" : "check the ledger"}.`,
      },
    ),
  ];
  const first = programs[0];
  try {
    const issuance = await get(`/api/loyalty/programs/${encodeURIComponent(first.program_id)}/reports/issuance`);
    out.push(
      barChart(
        `${first.name}: points issued and redeemed per month`,
        issuance.months.map((m) => ({ label: month(m.month), issued: m.net_issued, redeemed: m.redeemed })),
        { format: (v) => fmtNumber(Math.round(v)), integer: true, series: [{ name: "issued", key: "issued" }, { name: "redeemed", key: "redeemed" }] },
      ),
    );
  } catch (error) {
    out.push(errorBox(error));
  }
  return out;
}

