// The console reaches the server only through its public API, as any client does: the same routes,
// the same owner checks, the browser's `access_token` cookie as the credential, and the same CSRF
// guard (a same-origin fetch sends an Origin the server trusts). Paths are relative to the page, so
// a console served under a path prefix (a proxy's `/everloop/`) calls the API under it too.

export const BASE = new URL(".", document.baseURI);

export function url(path, query) {
  const target = new URL(path.replace(/^\//, ""), BASE);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) target.searchParams.append(key, String(one));
  }
  return target.toString();
}

/** An API answer that was not a success: `status`, the server's `message` and, for 400s, `field`. */
export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && (body.error || body.message || body.detail)) || `HTTP ${status}`;
    super(typeof message === "string" ? message : JSON.stringify(message));
    this.status = status;
    this.body = body;
    this.field = body && body.field;
  }
}

const listeners = new Set();
/** Called with no argument when the server says the sign-in is over (a 401 a refresh cannot mend). */
export function onSignedOut(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

let refreshing = null;
// Access tokens live 15 minutes; the refresh cookie (sent only to the auth routes) gets a new pair.
// A refresh token works once, and presenting a spent one ends the whole sign-in, so two refreshes
// must never race: within a tab they share one promise, and across tabs (each with its own streams
// and 401s at the same expiry) they take turns under a Web Lock, where a tab first asks whether
// another tab has refreshed already (the cookies are shared) before spending the token itself.
async function refreshOnce() {
  const signedIn = await fetch(url("api/auth/me"), { credentials: "same-origin" }).catch(() => null);
  if (signedIn && signedIn.ok) return true;
  const answer = await fetch(url("api/auth/refresh"), { method: "POST", credentials: "same-origin" }).catch(
    () => null,
  );
  return Boolean(answer && answer.ok);
}

async function refresh() {
  refreshing ||= (navigator.locks ? navigator.locks.request("everloop-refresh", refreshOnce) : refreshOnce())
    .catch(() => false)
    .finally(() => setTimeout(() => (refreshing = null), 0));
  return refreshing;
}

// The routes whose 401 is an answer, not an expired token: a wrong password, a spent refresh token.
const NO_REFRESH = /(^|\/)auth\/(login|register|refresh|logout)$/;

/** One API call. `body` is sent as JSON (as is if FormData, or a string with `contentType`); the
 * answer is parsed JSON or null, or its text with `text: true` (an agent's Markdown export). */
export async function request(method, path, options = {}) {
  const { body, query, headers, signal, contentType, text: asText, retry = true } = options;
  const accept = asText ? "*/*" : "application/json";
  const init = { method, credentials: "same-origin", headers: { accept, ...headers }, signal };
  if (body !== undefined) {
    if (body instanceof FormData) init.body = body;
    else if (typeof body === "string" && contentType) {
      init.body = body;
      init.headers["content-type"] = contentType;
    } else {
      init.body = JSON.stringify(body);
      init.headers["content-type"] = "application/json";
    }
  }
  const response = await fetch(url(path, query), init);
  if (response.status === 401 && retry && !NO_REFRESH.test(path)) {
    if (await refresh()) return request(method, path, { ...options, retry: false });
    listeners.forEach((listener) => listener());
  }
  const text = await response.text();
  if (asText && response.ok) return text;
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { error: text.slice(0, 500) };
    }
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const api = {
  get: (path, query, options) => request("GET", path, { query, ...options }),
  post: (path, body, options) => request("POST", path, { body, ...options }),
  put: (path, body, options) => request("PUT", path, { body, ...options }),
  patch: (path, body, options) => request("PATCH", path, { body, ...options }),
  del: (path, options) => request("DELETE", path, options),
};

// The names list answers keep their items under: the `{data: [...]}` envelope, and the seeds' own.
const ENVELOPES = ["data", "items", "traces", "results", "replays", "golden_tests", "runs", "sessions", "alerts"];

/** The items of a list answer (any envelope above), or a bare array (API keys). */
export function items(answer) {
  if (Array.isArray(answer)) return answer;
  for (const key of ENVELOPES) if (answer && Array.isArray(answer[key])) return answer[key];
  return [];
}
