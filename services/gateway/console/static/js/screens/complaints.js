// The complaints queue in SLA order (the API's: overdue first, then the nearest due date) with live
// timers, and one complaint: assignment, status changes along its lifecycle, and messages.

import { claims, currentSession, get, post } from "../api.js";
import { badge, dl, empty, errorBox, field, fmtDate, fmtDue, form, h, page, select, table, toast } from "../dom.js";
import { can } from "../roles.js";

const STATUSES = ["opened", "acknowledged", "in_progress", "resolved", "closed", "reopened"];
const OPEN = ["opened", "acknowledged", "in_progress", "reopened"];
const CHANNELS = ["store", "phone", "email", "web", "chat", "sms", "direct_mail", "fax", "kiosk", "app", "social", "field_visit"];
const ACTION_LABEL = {
  acknowledged: "Acknowledge",
  in_progress: "Start work",
  resolved: "Resolve",
  closed: "Close",
  reopened: "Reopen",
  opened: "Reopen",
};

let ticker = null;
function startTicker(root) {
  clearInterval(ticker);
  const tick = () => {
    if (!root.isConnected) {
      clearInterval(ticker);
      return;
    }
    for (const el of root.querySelectorAll("[data-due]")) {
      el.textContent = fmtDue(el.dataset.due);
      el.classList.toggle("overdue", new Date(el.dataset.due).getTime() < Date.now());
    }
  };
  tick();
  ticker = setInterval(tick, 30000);
}

function timer(due, answeredLabel) {
  if (!due) return answeredLabel || "—";
  return h("span", { class: "timer", "data-due": due, title: fmtDate(due) }, fmtDue(due));
}

// The branch a staff user is limited to (the token's `branch` claim), or null.
function branchLimit() {
  const s = currentSession();
  const c = s && s.access ? claims(s.access) : {};
  return typeof c.branch === "string" && c.branch ? c.branch : null;
}

// The queue lists every branch's complaints and the API cannot limit it to a branch, so it refuses it
// to branch-limited staff: explain that instead of showing the refusal, and point to where they can
// see complaints (a customer's 360, which lists that customer's).
function branchLimited(main, branch) {
  const note = h(
    "div",
    { class: "empty branch-limited", role: "status" },
    h("p", {}, h("strong", {}, branch ? `Your account is limited to branch ${branch}.` : "Your account is limited to one branch.")),
    h(
      "p",
      {},
      "The complaint queue spans every branch, so it is not shown to you. Open a customer of your branch to see their complaints: ",
      h("a", { href: "#/customers" }, "find a customer"),
      ".",
    ),
  );
  page(main, "Complaints", note);
}

export async function render(main, params, query) {
  if (params.id) {
    await renderOne(main, params.id);
    return;
  }
  const branch = branchLimit();
  if (branch) {
    branchLimited(main, branch);
    return;
  }
  const filters = {
    status: query.getAll("status").length ? query.getAll("status") : OPEN,
    priority: query.get("priority") || "",
    overdue: query.get("overdue") || "",
    owner_id: query.get("owner_id") || "",
  };
  const filterForm = form(
    { class: "filters", "aria-label": "Filter complaints" },
    [
      h(
        "div",
        { class: "grid-fields" },
        field("Status", select("status", [["open", "Open (not resolved)"], ["all", "All"], ...STATUSES.map((s) => [s, s.replace("_", " ")])], query.get("status") ? (query.getAll("status").length > 1 ? "open" : query.get("status")) : "open")),
        field("Priority", select("priority", [["", "Any"], "urgent", "high", "normal", "low"], filters.priority)),
        field("Overdue", select("overdue", [["", "Either"], ["true", "Overdue only"], ["false", "Not overdue"]], filters.overdue)),
        field("Owner", h("input", { name: "owner_id", value: filters.owner_id })),
      ),
      h("button", { type: "submit", class: "secondary" }, "Apply"),
    ],
    async (data) => {
      const p = new URLSearchParams();
      const s = data.get("status");
      if (s === "all") for (const x of STATUSES) p.append("status", x);
      else if (s !== "open") p.set("status", s);
      for (const k of ["priority", "overdue", "owner_id"]) if (data.get(k)) p.set(k, data.get(k));
      window.location.hash = `#/complaints?${p}`;
    },
  );
  let body;
  try {
    body = await get("/api/interactions/complaints", { ...filters, limit: 100 });
  } catch (error) {
    if (error && error.status === 403 && /branch/i.test(error.detail || "")) {
      branchLimited(main, (/branch '([^']+)'/.exec(error.detail) || [])[1] || null);
      return;
    }
    page(main, "Complaints", filterForm, errorBox(error));
    return;
  }
  const items = body.items || [];
  const list = items.length
    ? table(`${items.length}${body.next_cursor ? "+" : ""} complaint(s), most urgent first`, [
        { label: "Subject", render: (c) => h("a", { href: `#/complaints/${encodeURIComponent(c.id)}` }, c.subject) },
        { label: "Priority", render: (c) => badge(c.priority, `prio-${c.priority}`) },
        { label: "Status", render: (c) => badge(c.status.replace("_", " ")) },
        { label: "Channel", render: (c) => c.channel },
        { label: "Next due", render: (c) => (OPEN.includes(c.status) ? timer(c.next_due_at) : "—") },
        { label: "SLA", render: (c) => slaBadges(c) },
        { label: "Owner", render: (c) => c.owner_id || h("em", {}, "unassigned") },
        { label: "Customer", render: (c) => h("a", { href: `#/customers/${encodeURIComponent(c.customer_id)}` }, "360") },
      ], items, { class: "complaints" })
    : empty("No complaint matches: the queue is clear.");
  page(main, "Complaints", filterForm, list);
  startTicker(main);
}

function slaBadges(c) {
  const out = [];
  if (c.overdue) out.push(badge("overdue", "risk-high"));
  if (c.first_response_breached) out.push(badge("first response missed", "warn"));
  if (c.resolution_breached) out.push(badge("resolution missed", "warn"));
  if (c.escalation_level) out.push(badge(`escalated ×${c.escalation_level}`, "warn"));
  if (!out.length) out.push(badge("on track", "ok"));
  return out;
}

function actor() {
  const s = currentSession();
  return (s && (s.subject || s.user)) || null;
}

async function renderOne(main, id) {
  const c = await get(`/api/interactions/complaints/${encodeURIComponent(id)}`);
  const writable = can("complaints.write");
  const open = OPEN.includes(c.status);
  const info = dl([
    ["Status", h("strong", { id: "complaint-status" }, c.status.replace("_", " "))],
    ["Priority", c.priority],
    ["Channel", c.channel],
    ["Category", c.category],
    ["Owner", h("span", { id: "complaint-owner" }, c.owner_id || "unassigned")],
    ["Customer", h("a", { href: `#/customers/${encodeURIComponent(c.customer_id)}` }, "Open the customer's 360")],
    ["Opened", fmtDate(c.opened_at)],
    ["First response", c.first_response_at ? `answered ${fmtDate(c.first_response_at)}` : timer(open ? c.first_response_due : null)],
    ["Resolution", c.resolved_at ? `resolved ${fmtDate(c.resolved_at)}` : timer(open ? c.resolution_due : null)],
    ["SLA", slaBadges(c)],
  ]);
  const history = h(
    "ol",
    { class: "history" },
    (c.events || []).map((e) =>
      h(
        "li",
        {},
        h("time", { datetime: e.occurred_at }, fmtDate(e.occurred_at)),
        " ",
        badge(e.kind.replace("_", " ")),
        e.to_status && e.kind !== "opened" ? ` → ${e.to_status.replace("_", " ")}` : "",
        e.actor_id ? ` by ${e.actor_id}` : "",
        e.text ? h("blockquote", {}, `${e.direction ? `${e.direction}: ` : ""}${e.text}`) : null,
        e.details && e.details.owner_id ? ` (owner: ${e.details.owner_id})` : "",
      ),
    ),
  );
  const reload = () => window.dispatchEvent(new HashChangeEvent("hashchange"));
  const actions = [];
  if (writable) {
    const agreed = h("input", { type: "checkbox", name: "customer_agreed", id: "customer-agreed" });
    const note = h("input", { name: "note", maxlength: "1000" });
    const buttons = (c.allowed_next || []).map((next) =>
      h("button", { type: "submit", class: next === "closed" || next === "resolved" ? "primary" : "secondary", value: next, "data-status": next }, ACTION_LABEL[next] || next),
    );
    let target = null;
    const statusForm = form(
      { class: "status-form", "aria-label": "Change the status" },
      [
        field("Note (optional)", note),
        (c.allowed_next || []).includes("closed")
          ? h("div", { class: "check" }, agreed, h("label", { for: "customer-agreed" }, "The customer agrees it can be closed"))
          : null,
        buttons.length ? h("div", { class: "actions" }, buttons) : h("p", {}, "No further status change is possible."),
      ],
      async (data) => {
        if (!target) return;
        await post(`/api/interactions/complaints/${encodeURIComponent(id)}/status`, {
          status: target,
          customer_agreed: data.get("customer_agreed") === "on",
          note: data.get("note") || null,
          actor_id: actor(),
        });
        toast(`Complaint ${target.replace("_", " ")}.`);
        reload();
      },
    );
    for (const b of buttons) b.addEventListener("click", () => { target = b.value; });
    actions.push(h("section", { class: "card", "aria-label": "Status" }, h("h2", {}, "Status"), statusForm));

    const owner = h("input", { name: "owner_id", required: true, value: c.owner_id || actor() || "" });
    actions.push(
      h(
        "section",
        { class: "card", "aria-label": "Assignment" },
        h("h2", {}, "Assignment"),
        form({ class: "assign-form", "aria-label": "Assign an owner" }, [field("Owner", owner, "The person with authority to resolve it"), h("button", { type: "submit", class: "secondary" }, "Assign")], async (data, status) => {
          const who = String(data.get("owner_id") || "").trim();
          if (!who) {
            status.append(h("div", { class: "error-box", role: "alert" }, "Give the owner's id."));
            return;
          }
          await post(`/api/interactions/complaints/${encodeURIComponent(id)}/assign`, { owner_id: who, actor_id: actor() });
          toast(`Assigned to ${who}.`);
          reload();
        }),
      ),
    );

    actions.push(
      h(
        "section",
        { class: "card", "aria-label": "Messages" },
        h("h2", {}, "Add a message"),
        form(
          { class: "message-form", "aria-label": "Add a message" },
          [
            h("div", { class: "grid-fields" }, field("Direction", select("direction", [["outbound", "To the customer"], ["inbound", "From the customer"]], "outbound")), field("Channel", select("channel", CHANNELS, c.channel))),
            field("Message", h("textarea", { name: "text", rows: "3", required: true })),
            h("button", { type: "submit", class: "secondary" }, "Add message"),
          ],
          async (data, status) => {
            const text = String(data.get("text") || "").trim();
            if (!text) {
              status.append(h("div", { class: "error-box", role: "alert" }, "Write the message."));
              return;
            }
            await post(`/api/interactions/complaints/${encodeURIComponent(id)}/messages`, { direction: data.get("direction"), channel: data.get("channel"), text, author_id: actor() });
            toast("Message added.");
            reload();
          },
        ),
      ),
    );
  }
  page(
    main,
    c.subject,
    h("p", {}, h("a", { href: "#/complaints" }, "← Back to the queue")),
    h("div", { class: "columns" }, h("section", { class: "card", "aria-label": "Details" }, h("h2", {}, "Details"), info), h("section", { class: "card", "aria-label": "History" }, h("h2", {}, "History"), history.childElementCount ? history : empty("No history."))),
    writable ? h("div", { class: "columns" }, actions) : h("p", { class: "hint" }, "Your role can read complaints but not change them."),
  );
  startTicker(main);
}

