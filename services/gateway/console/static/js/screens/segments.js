// Segments: the list, a rule builder (a form over the rule catalogue) with a preview of the count and a
// sample before saving, and one segment with its members and membership over time.

import { get, post } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { badge, button, clear, customerName, dl, empty, errorBox, field, fmtDate, fmtDay, fmtNumber, form, h, page, section, select, table, toast, uid } from "../dom.js";
import { can } from "../roles.js";

let catalogueCache = null;
async function catalogue() {
  if (!catalogueCache) catalogueCache = await get("/api/segmentation/segments/catalogue");
  return catalogueCache;
}

export async function render(main, params) {
  if (params.id === "new") {
    await renderBuilder(main);
    return;
  }
  if (params.id) {
    await renderOne(main, params.id);
    return;
  }
  const body = await get("/api/segmentation/segments");
  const items = body.items || [];
  page(
    main,
    "Segments",
    can("segments.write") ? h("p", {}, h("a", { href: "#/segments/new", class: "button primary", id: "new-segment" }, "Build a segment")) : null,
    items.length
      ? table(`${items.length} segment(s)`, [
          { label: "Name", render: (s) => h("a", { href: `#/segments/${encodeURIComponent(s.id)}` }, s.name) },
          { label: "Kind", render: (s) => badge(s.kind) },
          { label: "Description", render: (s) => s.description || "—" },
          { label: "Evaluated", render: (s) => fmtDate(s.evaluated_at) },
          { label: "Version", render: (s) => s.version },
        ], items, { class: "segments" })
      : empty("No segment yet." + (can("segments.write") ? " Build one from a rule: preview its size before saving." : "")),
  );
}

function defaultValue(f) {
  if (f.choices) return f.choices[0];
  if (f.type === "boolean") return "true";
  return "";
}

function conditionRow(cat, onRemove) {
  const row = h("fieldset", { class: "condition" });
  const legendId = uid("cond");
  const fieldSel = select("field", cat.fields.map((f) => [f.field, `${f.field} — ${f.description}`]), "purchase_count");
  const opHolder = h("div", { class: "op-holder" });
  const valueHolder = h("div", { class: "value-holder" });
  const rebuild = () => {
    const f = cat.fields.find((x) => x.field === fieldSel.value);
    const opSel = select("op", f.operators, f.operators.includes(">=") ? ">=" : f.operators[0]);
    clear(opHolder).append(field("Operator", opSel));
    const rebuildValue = () => {
      const op = opSel.value;
      clear(valueHolder);
      if (op === "is_null" || op === "is_not_null") return;
      if (op === "between") {
        valueHolder.append(field("From", h("input", { name: "low", type: "number", required: true })), field("To", h("input", { name: "high", type: "number", required: true })));
        return;
      }
      if (f.choices) {
        valueHolder.append(field("Value", select("value", f.choices, defaultValue(f))));
      } else if (f.type === "boolean") {
        valueHolder.append(field("Value", select("value", ["true", "false"], "true")));
      } else if (f.type === "date" && (op === "before" || op === "after")) {
        valueHolder.append(field("Date", h("input", { name: "value", type: "date", required: true })));
      } else if (f.type === "integer" || f.type === "number" || op === "within_last_days" || op === "older_than_days") {
        valueHolder.append(field(op.endsWith("_days") ? "Days" : "Value", h("input", { name: "value", type: "number", step: f.type === "number" ? "any" : "1", required: true })));
      } else {
        valueHolder.append(field(op === "in" || op === "not_in" ? "Values (comma-separated)" : "Value", h("input", { name: "value", required: true })));
      }
    };
    opSel.addEventListener("change", rebuildValue);
    rebuildValue();
  };
  fieldSel.addEventListener("change", rebuild);
  rebuild();
  row.append(
    h("legend", { id: legendId }, "Condition"),
    h("div", { class: "grid-fields" }, field("Field", fieldSel), opHolder, valueHolder),
    button("Remove condition", () => onRemove(row), { class: "link" }),
  );
  row.toRule = () => {
    const f = cat.fields.find((x) => x.field === fieldSel.value);
    const op = row.querySelector("[name=op]").value;
    const rule = { field: f.field, op };
    if (op === "is_null" || op === "is_not_null") return rule;
    if (op === "between") {
      rule.value = [Number(row.querySelector("[name=low]").value), Number(row.querySelector("[name=high]").value)];
      return rule;
    }
    const raw = row.querySelector("[name=value]").value.trim();
    if (raw === "") throw Object.assign(new Error(`give a value for ${f.field}`), { title: "Incomplete rule", detail: `give a value for ${f.field}` });
    if (f.type === "boolean") rule.value = raw === "true";
    else if (op === "in" || op === "not_in") rule.value = raw.split(",").map((x) => x.trim()).filter(Boolean);
    else if (f.type === "integer" || op.endsWith("_days")) rule.value = Number.parseInt(raw, 10);
    else if (f.type === "number") rule.value = Number(raw);
    else rule.value = raw;
    return rule;
  };
  return row;
}

async function renderBuilder(main) {
  if (!can("segments.write")) {
    page(main, "Build a segment", errorBox({ status: 403, title: "Forbidden", detail: "building segments is not available to your role" }));
    return;
  }
  const cat = await catalogue();
  const conditions = h("div", { class: "conditions" });
  const addCondition = () => {
    const row = conditionRow(cat, (r) => {
      if (conditions.children.length > 1) r.remove();
    });
    conditions.append(row);
    return row;
  };
  addCondition();
  const combinator = select("combinator", [["all", "all of these conditions"], ["any", "any of these conditions"]], "all");
  const preview = h("div", { class: "preview", id: "segment-preview", "aria-live": "polite" });
  const rule = () => {
    const parts = [...conditions.children].map((row) => row.toRule());
    return parts.length === 1 ? parts[0] : { [combinator.value]: parts };
  };
  const doPreview = async () => {
    clear(preview).append(h("p", { class: "loading" }, "Counting…"));
    try {
      const result = await post("/api/segmentation/segments/preview", { rule: rule() });
      clear(preview).append(
        h("p", { class: "count" }, h("strong", { id: "preview-count" }, fmtNumber(result.count)), " customer(s) match now", result.time_relative ? " (changes as time passes)" : "", "."),
      );
      if (result.sample.length) {
        const list = h("ul", { class: "sample" });
        preview.append(h("p", {}, "A sample:"), list);
        for (const id of result.sample.slice(0, 10)) {
          const li = h("li", {}, h("a", { href: `#/customers/${encodeURIComponent(id)}` }, id));
          list.append(li);
          get(`/api/identity/customers/${encodeURIComponent(id)}`).then((c) => { li.firstChild.textContent = customerName(c); }).catch(() => {});
        }
      }
    } catch (error) {
      clear(preview).append(errorBox(error));
    }
  };
  const builder = form(
    { class: "segment-builder", "aria-label": "Segment rule" },
    [
      h("div", { class: "grid-fields" }, field("Name", h("input", { name: "name", required: true, maxlength: "200" })), field("Description", h("input", { name: "description", maxlength: "1000" }))),
      field("Customers who match", combinator),
      conditions,
      h("div", { class: "actions" }, button("Add a condition", () => addCondition().querySelector("select").focus(), { class: "secondary" }), button("Preview", doPreview, { class: "secondary", id: "preview-button" }), h("button", { type: "submit", class: "primary" }, "Save segment")),
      preview,
    ],
    async (data, status) => {
      const name = String(data.get("name") || "").trim();
      if (!name) {
        status.append(h("div", { class: "error-box", role: "alert" }, "Give the segment a name."));
        main.querySelector("[name=name]").focus();
        return;
      }
      const saved = await post("/api/segmentation/segments", { name, description: data.get("description") || null, kind: "rule", rule: rule() });
      toast(`Segment “${saved.segment.name}” saved: ${saved.entered} member(s).`);
      window.location.hash = `#/segments/${encodeURIComponent(saved.segment.id)}`;
    },
  );
  page(main, "Build a segment", h("p", {}, h("a", { href: "#/segments" }, "← All segments")), h("p", {}, "Choose conditions on the customers' features; preview how many match, then save."), builder);
}

async function renderOne(main, id) {
  const segment = await get(`/api/segmentation/segments/${encodeURIComponent(id)}`);
  const membersBox = h("div", {}, h("p", { class: "loading" }, "Loading members…"));
  const chartBox = h("div", {});
  page(
    main,
    segment.name,
    h("p", {}, h("a", { href: "#/segments" }, "← All segments")),
    h(
      "div",
      { class: "columns" },
      section(
        "Definition",
        dl([
          ["Members now", h("strong", { id: "segment-count" }, fmtNumber(segment.member_count))],
          ["Kind", segment.kind],
          ["Description", segment.description],
          ["Changes with time", segment.time_relative ? "yes (re-evaluated on schedule)" : "no"],
          ["Last evaluated", fmtDate(segment.evaluated_at)],
          ["Version", segment.version],
        ]),
        segment.rule ? h("details", {}, h("summary", {}, "The rule as JSON"), h("pre", {}, JSON.stringify(segment.rule, null, 2))) : null,
      ),
      section("Membership over time", chartBox),
    ),
    section("Members", membersBox),
  );
  const history = renderHistory(chartBox, id); // alongside the members
  const members = [];
  let cursor = null;
  try {
    do {
      const body = await get(`/api/segmentation/segments/${encodeURIComponent(id)}/members`, { limit: 500, cursor });
      members.push(...body.items);
      cursor = body.next_cursor;
    } while (cursor && members.length < 5000);
  } catch (error) {
    clear(membersBox).append(errorBox(error));
    return;
  }
  clear(membersBox).append(
    members.length
      ? table(`${members.length}${cursor ? "+" : ""} member(s) (first 50 shown)`, [
          { label: "Customer", render: (m) => h("a", { href: `#/customers/${encodeURIComponent(m.customer_id)}` }, m.customer_id) },
          { label: "Member since", render: (m) => fmtDate(m.since) },
        ], members.slice(0, 50))
      : empty("No member now."),
  );
  await history;
}

// Membership over time from the recorded entries and exits (GET /segments/{id}/history): members at
// the end of each day, week or month, and the entries and exits during it. The interval is a select,
// so the chart can be changed from the keyboard.
const HISTORY_RANGES = { day: 90, week: 364, month: 730 };

async function renderHistory(chartBox, id, interval = "day") {
  const picker = select("interval", [["day", "Daily (90 days)"], ["week", "Weekly (a year)"], ["month", "Monthly (two years)"]], interval, { id: "segment-history-interval" });
  const body = h("div", { id: "segment-history", "aria-live": "polite" }, h("p", { class: "loading" }, "Loading history…"));
  clear(chartBox).append(field("Periods", picker), body);
  picker.addEventListener("change", () => renderHistory(chartBox, id, picker.value).then(() => chartBox.querySelector("select")?.focus()));
  const until = new Date();
  const since = new Date(until.getTime() - HISTORY_RANGES[interval] * 86400000);
  let history;
  try {
    history = await get(`/api/segmentation/segments/${encodeURIComponent(id)}/history`, { interval, since: since.toISOString(), until: until.toISOString() });
  } catch (error) {
    clear(body).append(errorBox(error));
    return;
  }
  const buckets = history.buckets || [];
  if (!buckets.some((b) => b.members || b.entered || b.exited) && !history.members_at_start) {
    clear(body).append(empty("No one has entered this segment in this period, so nothing to chart."));
    return;
  }
  const label = (b) => fmtDay(`${b.start}T12:00:00Z`); // a UTC day, shown as that day wherever the reader is
  const format = (v) => fmtNumber(Math.round(v));
  clear(body).append(
    lineChart(`Members at the end of each ${interval}`, buckets.map((b) => ({ label: label(b), value: b.members })), { format }),
    barChart(`Entries and exits per ${interval}`, buckets.map((b) => ({ label: label(b), entered: b.entered, exited: b.exited })), {
      labels: 6, // dated labels in a half-width card
      format,
      integer: true,
      series: [{ name: "Entered", key: "entered" }, { name: "Exited", key: "exited" }],
      note: `Members at the start: ${fmtNumber(history.members_at_start)}. From the recorded history of every entry and exit (UTC periods).`,
    }),
  );
}
