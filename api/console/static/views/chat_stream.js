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
// A stream that fails to open while the session answers is refused, not cut off (an EventSource
// never sees the status: a 400 looks like a dropped network). After this many refusals the stream
// resumes from the last stored event's sequence rather than from `since_id`...
export const REFUSALS_BEFORE_FALLBACK = 2;
// ...and after this many it stops and says so (the page offers to try again).
export const REFUSALS_BEFORE_GIVING_UP = 4;

/**
 * Follows the stream at `path` (relative, e.g. `v1/agents/A/sessions/S/sse`) until `close()`.
 * - `onFrame(frame)`: each event envelope (`{id, type, data, context, ...}`) once, in order.
 * - `onState({state, delay, connections})`: `connecting`, `live`, `reconnecting` (retrying in
 *   `delay` ms), `gone` (the session no longer exists), `failed` (the server keeps refusing the
 *   stream: `restart()` tries again) — for the page's status line.
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
  let lastSequence = null; // of the last stored event received (live frames have none)
  let source = null;
  let timer = null;
  let delay = FIRST_DELAY_MS;
  let connections = 0;
  let closed = false;
  let failed = false;
  // Whether the stream being opened follows a successful check(), and how many such opens in a row
  // ended before the stream's `connected` event.
  let checked = false;
  let refusals = 0;
  let bySequence = false; // since_id was refused: resume by sequence until the stream is back

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
    if (frame && typeof frame.sequence === "number" && frame.sequence > (lastSequence ?? -1)) lastSequence = frame.sequence;
    onFrame(frame);
  };

  // Where the stream starts again: `since_id` rather than the browser's own Last-Event-ID (that one
  // stays on the last stored event, as live frames have no `id:` line, and would replay what the
  // deltas already showed). When the server keeps refusing that id (a 400: it does not know it),
  // the last stored event's sequence; frames seen already are dropped by their ids.
  const cursor = () => {
    if (!lastId) return query;
    if (!bySequence) return { ...query, since_id: lastId };
    return lastSequence === null ? query : { ...query, after_sequence: lastSequence };
  };

  const open = () => {
    if (closed) return;
    connections += 1;
    state(connections === 1 ? "connecting" : "reconnecting", { delay: 0 });
    const opened = new EventSource(url(path, cursor()));
    source = opened;
    opened.addEventListener("connected", () => {
      delay = FIRST_DELAY_MS;
      refusals = 0;
      bySequence = false;
      checked = false;
      state("live");
      if (connections > 1 && onResume) onResume();
    });
    for (const type of EVENT_TYPES) opened.addEventListener(type, receive);
    opened.onerror = () => {
      // Refused: it ended before `connected`, though the session had just answered.
      if (checked) refusals += 1;
      if (refusals >= REFUSALS_BEFORE_FALLBACK) bySequence = true;
      checked = false;
      drop();
    };
  };

  const retry = () => {
    timer = null;
    if (closed) return;
    checked = false;
    Promise.resolve(check ? check() : null).then(
      () => {
        if (closed) return;
        checked = Boolean(check);
        open();
      },
      (error) => {
        if (closed) return;
        if (error && error.status === 404) state("gone");
        else drop();
      },
    );
  };

  // The browser would reconnect by itself, but from its Last-Event-ID and after giving up for good
  // on any answer but 200: we close it and come back with our own cursor and backoff.
  function drop() {
    if (source) {
      source.close();
      source = null;
    }
    if (closed || timer) return;
    if (refusals >= REFUSALS_BEFORE_GIVING_UP) {
      failed = true;
      state("failed");
      return;
    }
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
    /** After `failed`: tries again from the start of the backoff (the user pressed "Retry"). */
    restart() {
      if (closed || !failed) return;
      failed = false;
      refusals = 0;
      delay = FIRST_DELAY_MS;
      retry();
    },
  };
}
