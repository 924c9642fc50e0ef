// The public API through the gateway, with the staff member's bearer token.
//
// Tokens come from the OAuth2 password flow at POST /auth/token and live in sessionStorage only (gone
// when the tab closes). A 401 triggers one refresh (grant_type=refresh_token) and one retry; if that
// fails too, the session ends and the sign-in page is shown.

const STORE = "crm-console-session";
const TOKEN_URL = "/auth/token";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.detail = problem.detail || problem.title || `HTTP ${status}`;
    this.errors = problem.errors || [];
    this.problem = problem;
  }
}

const listeners = new Set();
export function onSessionChange(fn) {
  listeners.add(fn);
}

let session = load();

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE)) || null;
  } catch {
    return null;
  }
}

function save(next) {
  session = next;
  if (next) sessionStorage.setItem(STORE, JSON.stringify(next));
  else sessionStorage.removeItem(STORE);
  for (const fn of listeners) fn(session);
}

export function currentSession() {
  return session;
}

// The claims of a JWT (not verified here: the gateway verifies every request).
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="));
    return JSON.parse(decodeURIComponent(escape(json)));
  } catch {
    return {};
  }
}

function fromTokenResponse(body, username) {
  const c = claims(body.access_token);
  return {
    mode: "token",
    access: body.access_token,
    refresh: body.refresh_token || null,
    expires_at: body.expires_in ? Date.now() + body.expires_in * 1000 : null,
    user: c.name || c.preferred_username || c.sub || username,
    subject: c.sub || username,
    roles: Array.isArray(c.roles) ? c.roles : typeof c.roles === "string" ? c.roles.split(/[ ,]+/) : [],
    kind: c.kind || null,
  };
}

async function tokenRequest(fields) {
  const response = await fetch(TOKEN_URL, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
    body: new URLSearchParams(fields).toString(),
  });
  const body = await parse(response);
  return { response, body };
}

// Signs in. A gateway with authentication switched off (CRM_AUTH_ENABLED=false, development only)
// refuses to issue tokens but answers the API without one: the console then works in "open" mode,
// every action offered, and says so in a banner.
export async function signIn(username, password) {
  const { response, body } = await tokenRequest({ grant_type: "password", username, password });
  if ([403, 404, 405].includes(response.status) && (await apiIsOpen())) {
    save({ mode: "open", user: username || "staff", subject: username, roles: ["admin"], kind: "open" });
    return session;
  }
  if (!response.ok) {
    const problem = typeof body === "object" && body ? body : {};
    // OAuth2 errors are {error, error_description}; problem documents have detail.
    throw new ApiError(response.status, {
      title: response.status === 401 || response.status === 400 ? "Sign-in failed" : problem.title,
      detail: problem.detail || problem.error_description || problem.error || "wrong user name or password",
      errors: problem.errors,
    });
  }
  save(fromTokenResponse(body, username));
  return session;
}

export function signOut() {
  save(null);
}

async function apiIsOpen() {
  try {
    const probe = await fetch("/api/loyalty/programs", { headers: { accept: "application/json" } });
    return probe.ok;
  } catch {
    return false;
  }
}

let refreshing = null;
async function refresh() {
  if (!session || !session.refresh) return false;
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const { response, body } = await tokenRequest({
          grant_type: "refresh_token",
          refresh_token: session.refresh,
        });
        if (!response.ok) return false;
        const next = fromTokenResponse(body, session.user);
        if (!next.refresh) next.refresh = session.refresh;
        save(next);
        return true;
      } catch {
        return false;
      } finally {
        setTimeout(() => {
          refreshing = null;
        }, 0);
      }
    })();
  }
  return refreshing;
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return await response.text();
}

// api("GET", "/api/identity/customers", {query: {q: "ana"}}) → the parsed body, or throws ApiError
// carrying the problem document.
export async function api(method, path, options = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(options.query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
  }
  const send = () => {
    const headers = { accept: options.accept || "application/json" };
    if (session && session.access) headers.authorization = `Bearer ${session.access}`;
    let body;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    return fetch(url, { method, headers, body });
  };
  let response;
  try {
    response = await send();
  } catch (error) {
    throw new ApiError(0, { title: "Network error", detail: `the gateway could not be reached (${error.message})` });
  }
  if (response.status === 401 && session && session.mode === "token") {
    if (await refresh()) {
      response = await send();
    }
    if (response.status === 401) {
      save(null);
      throw new ApiError(401, { title: "Signed out", detail: "your session has expired: please sign in again" });
    }
  }
  const body = await parse(response);
  if (!response.ok) {
    const problem = body && typeof body === "object" ? body : { detail: typeof body === "string" ? body : "" };
    throw new ApiError(response.status, problem);
  }
  return body;
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, json, query) => api("POST", path, { json: json ?? {}, query });
export const put = (path, json) => api("PUT", path, { json });
