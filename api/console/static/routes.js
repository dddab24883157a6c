// The console's views: a hash route each (`#/chat/...`), loaded on first visit, so the chat page
// carries only the chat view's code. A view module's default export is a component taking
// `{params}` (the pattern's groups, in order).

export const ROUTES = [
  { pattern: /^chat(?:\/([^/]+))?(?:\/([^/]+))?$/, load: () => import("./views/chat.js"), nav: "chat" },
  { pattern: /^agents$/, load: () => import("./views/agents.js"), nav: "agents" },
  { pattern: /^agents\/([^/]+)$/, load: () => import("./views/agent_edit.js"), nav: "agents" },
  { pattern: /^providers$/, load: () => import("./views/providers.js"), nav: "providers" },
  { pattern: /^mcp$/, load: () => import("./views/mcp.js"), nav: "mcp" },
  { pattern: /^sessions$/, load: () => import("./views/sessions.js"), nav: "sessions" },
  { pattern: /^sessions\/([^/]+)\/([^/]+)$/, load: () => import("./views/session_detail.js"), nav: "sessions" },
  { pattern: /^traces$/, load: () => import("./views/traces.js"), nav: "traces" },
  { pattern: /^traces\/(.+)$/, load: () => import("./views/trace.js"), nav: "traces" },
  { pattern: /^replays$/, load: () => import("./views/replays.js"), nav: "replays" },
  { pattern: /^replays\/([^/]+)$/, load: () => import("./views/replay.js"), nav: "replays" },
  { pattern: /^golden$/, load: () => import("./views/golden.js"), nav: "golden" },
  { pattern: /^drift$/, load: () => import("./views/drift.js"), nav: "drift" },
  { pattern: /^usage$/, load: () => import("./views/usage.js"), nav: "usage" },
  { pattern: /^account$/, load: () => import("./views/account.js"), nav: "account" },
];

export const NAV = [
  { group: "Use", items: [{ id: "chat", label: "Chat", href: "#/chat" }] },
  {
    group: "Build",
    items: [
      { id: "agents", label: "Agents", href: "#/agents" },
      { id: "providers", label: "Providers & models", href: "#/providers" },
      { id: "mcp", label: "MCP servers", href: "#/mcp" },
    ],
  },
  {
    group: "Operate",
    items: [
      { id: "sessions", label: "Sessions", href: "#/sessions" },
      { id: "traces", label: "Traces", href: "#/traces" },
      { id: "replays", label: "Replays", href: "#/replays" },
      { id: "golden", label: "Golden tests", href: "#/golden" },
      { id: "drift", label: "Drift", href: "#/drift" },
      { id: "usage", label: "Usage & cost", href: "#/usage" },
    ],
  },
  { group: "You", items: [{ id: "account", label: "Account", href: "#/account" }] },
];

export const DEFAULT_ROUTE = "chat";

/** The route of a hash (`#/agents/1` → the agents/:id view and ["1"]), or null. Params come
 * URL-encoded, ready for an API path; `.` and `..` match nothing (they would climb the path). */
export function match(hash) {
  let path;
  try {
    path = decodeURIComponent(hash.replace(/^#\/?/, "").replace(/\/$/, "")) || DEFAULT_ROUTE;
  } catch {
    return null; // a malformed escape (`#/%`): no such page
  }
  for (const route of ROUTES) {
    const found = route.pattern.exec(path);
    if (!found) continue;
    const params = found.slice(1);
    if (params.some((p) => p === "." || p === "..")) return null;
    return { route, params: params.map((p) => (p === undefined ? null : encodeURIComponent(p))), path };
  }
  return null;
}
