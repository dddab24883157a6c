// A session's event stream that survives network drops: an EventSource on `.../sse`, reopened by us
// (not by the browser) from the last frame we received, so nothing is lost or shown twice.
import { url } from "../api.js";

// EventSource hands named events only to listeners of that name, so every type is listed
// (docs/api.md, "Event types"); a type added later is simply not shown until it is added here.
export const EVENT_TYPES = [
  "message.user",
  "session.activated",
  "turn.started",
  "input.received",
  "reason.started",
  "llm.generation",
  "message.agent",
  "output.message.completed",
  "reason.completed",
  "act.started",
  "tool.approval_requested",
  "tool.call_requested",
  "tool.approval_resolved",
  "tool.call_started",
  "tool.call_completed",
  "act.completed",
  "turn.completed",
  "turn.failed",
  "turn.cancelled",
  "session.idled",
  "output.message.delta",
  "output.message.reset",
];

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 10000;

/**
 * Follows the stream at `path` (relative, e.g. `v1/agents/A/sessions/S/sse`) until `close()`.
 * - `onFrame(frame)`: each event envelope (`{id, type, data, context, ...}`) once, in order.
 * - `onState({state, delay, connections})`: `connecting`, `live`, `reconnecting` (retrying in
 *   `delay` ms), `gone` (the session no longer exists) — for the page's status line.
 * - `onResume()`: the stream is back after a cut. Live-only frames (a reply's deltas) sent
 *   meanwhile are not replayed: what streamed before has a gap until the whole message arrives.
 * - `check()`: an API call made before each reconnect: it renews an expired sign-in (the API
 *   client refreshes on a 401, which an EventSource cannot) and tells a deleted session (404)
 *   from a network that is still down.
 * - `query`: the stream's filters (`exclude`...), kept on every reconnect.
 */
export function followSession(path, { onFrame, onState, onResume, check, query = {} }) {
  const seen = new Set();
  let lastId = null;
  let source = null;
  let timer = null;
  let delay = FIRST_DELAY_MS;
  let connections = 0;
  let closed = false;

  const state = (name, extra = {}) => onState && onState({ state: name, connections, ...extra });

  const receive = (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    // Stored events and live deltas both carry an id; a live delta's id is a position the server
    // resumes from, so the last id of either kind is where a reconnect starts.
    const id = (frame && frame.id) || event.lastEventId;
    if (id) {
      if (seen.has(id)) return;
      seen.add(id);
      lastId = id;
    }
    onFrame(frame);
  };

  const open = () => {
    if (closed) return;
    connections += 1;
    state(connections === 1 ? "connecting" : "reconnecting", { delay: 0 });
    // `since_id` rather than the browser's own Last-Event-ID: that one stays on the last stored
    // event (live frames have no `id:` line), which would replay what the deltas already showed.
    source = new EventSource(url(path, lastId ? { ...query, since_id: lastId } : query));
    source.addEventListener("connected", () => {
      delay = FIRST_DELAY_MS;
      state("live");
      if (connections > 1 && onResume) onResume();
    });
    for (const type of EVENT_TYPES) source.addEventListener(type, receive);
    source.onerror = drop;
  };

  const retry = () => {
    timer = null;
    if (closed) return;
    Promise.resolve(check ? check() : null).then(open, (error) => {
      if (closed) return;
      if (error && error.status === 404) state("gone");
      else drop();
    });
  };

  // The browser would reconnect by itself, but from its Last-Event-ID and after giving up for good
  // on any answer but 200: we close it and come back with our own cursor and backoff.
  function drop() {
    if (source) {
      source.close();
      source = null;
    }
    if (closed || timer) return;
    state("reconnecting", { delay });
    timer = setTimeout(retry, delay);
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }

  const retryNow = () => {
    if (closed || !timer) return;
    clearTimeout(timer);
    retry();
  };
  // The network is back (the browser says so): no need to wait out the backoff.
  window.addEventListener("online", retryNow);

  open();
  return {
    close() {
      closed = true;
      window.removeEventListener("online", retryNow);
      if (timer) clearTimeout(timer);
      if (source) source.close();
      source = null;
    },
    /** Reconnects now (the user pressed "Retry now"), without waiting out the backoff. */
    retryNow,
  };
}
