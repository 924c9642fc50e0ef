// What each staff role may see and do in the console. The gateway enforces the same roles on every
// request: this only hides what would be refused (a 403 that slips through is shown as an error).

import { currentSession } from "./api.js";

const ROLE_ALIASES = {
  support_agent: "support",
  "support-agent": "support",
  agent: "support",
};

export const ROLE_LABELS = {
  admin: "Administrator",
  marketer: "Marketer",
  support: "Support agent",
  analyst: "Analyst",
  integration: "Integration",
};

// The gateway's role → permission table (shared/auth/policy.py, ROLE_PERMISSIONS), for the staff roles.
// Integration accounts are for systems: the console offers them nothing.
const ROLE_PERMISSIONS = {
  admin: ["*"],
  marketer: ["profile.read", "interactions.read", "segments.read", "segments.manage", "analytics.read", "loyalty.read", "loyalty.manage"],
  support: ["profile.read", "profile.write", "interactions.read", "interactions.write", "complaints.manage", "segments.read", "loyalty.read", "loyalty.write"],
  analyst: ["analytics.read", "segments.read"],
  integration: [],
};

// What the console asks for → the API permission it needs.
const NEEDS = {
  "customers.read": "profile.read",
  "customers.merge": "profile.merge",
  "complaints.read": "interactions.read",
  "complaints.open": "interactions.write",
  "complaints.write": "complaints.manage",
  "segments.read": "segments.read",
  "segments.write": "segments.manage",
  "values.recompute": "segments.manage",
  "loyalty.read": "loyalty.read",
  "loyalty.configure": "loyalty.manage",
  "loyalty.points": "loyalty.write",
  "dashboards.read": "analytics.read",
};

export function roles() {
  const session = currentSession();
  if (!session) return [];
  return (session.roles || []).map((r) => ROLE_ALIASES[String(r).toLowerCase()] || String(r).toLowerCase());
}

export function can(action) {
  const needed = NEEDS[action] || action;
  return roles().some((role) => {
    const grants = ROLE_PERMISSIONS[role] || [];
    return grants.includes("*") || grants.includes(needed);
  });
}

export function roleNames() {
  return roles().map((r) => ROLE_LABELS[r] || r);
}
