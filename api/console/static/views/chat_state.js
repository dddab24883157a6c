// A session's conversation as the chat shows it, folded from its event frames (docs/api.md, "Event
// types"): user messages, replies (streamed, then final), tool calls with their approvals and
// results, and how turns ended. Pure functions: the stream and the page live elsewhere.

// `waiting`: a user message has no turn yet (the page shows that the agent is about to answer).
// `resync`: the stream came back after a cut while a turn was under way (see RESUMED).
export const EMPTY = { items: [], index: {}, running: false, waiting: false, lastUser: null, ended: {}, resync: false };

// Not an event of the API: the page folds it in when its stream is back after a cut. A reply's
// deltas are live-only (never replayed), so those sent during the cut are lost for good: the
// deltas that follow would be glued onto the text after a hole ("Hello wor" + " you"). A reply
// still streaming then has a `gap`: it keeps the text it had (true, if short), takes no more deltas
// and waits for the whole message. A reply that began during the cut is just as short of its start,
// and nothing in a delta tells it apart from one that began after: until the turn under way ends,
// a new reply has a gap too. A reset starts a reply again from its first word: no gap after it.
export const RESUMED = "console.stream_resumed";

function textOf(message) {
  return (message && message.content ? message.content : [])
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}

/** A tool result's text parts hold its JSON (docs/api.md): the value, or the text when not JSON. */
export function resultValue(parts) {
  if (!Array.isArray(parts)) return parts;
  const text = parts.map((part) => (part && part.text) || "").join("");
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// Items are kept in order of first appearance; `index` finds an item by key for later frames.
function upsert(state, key, make, change) {
  const at = state.index[key];
  if (at === undefined) {
    const item = change({ key, ...make });
    return { ...state, items: [...state.items, item], index: { ...state.index, [key]: state.items.length } };
  }
  const items = state.items.slice();
  items[at] = change(items[at]);
  return { ...state, items };
}

function update(state, key, change) {
  const at = state.index[key];
  if (at === undefined) return state;
  const items = state.items.slice();
  items[at] = change(items[at]);
  return { ...state, items };
}

const same = (x) => x;

// A turn is over: approvals it still asked for can no longer be given, and a reply cut short
// (a cancel) stops showing as "streaming".
function endTurn(state, turnId, how, input) {
  const items = state.items.map((item) => {
    if (item.turn !== turnId) return item;
    if (item.kind === "tool" && item.approval === "pending") return { ...item, approval: "expired" };
    if (item.kind === "agent" && !item.final) return { ...item, final: true, stopped: how === "cancelled" };
    return item;
  });
  // A message posted while this turn ran still waits for its own turn.
  const waiting = state.waiting && input !== state.lastUser;
  return { ...state, items, running: false, waiting, resync: false, ended: { ...state.ended, [turnId]: how } };
}

/** The state after one frame (an event envelope). */
export function fold(state, frame) {
  const data = frame.data || {};
  const turn = (frame.context && frame.context.turn_id) || data.turn_id || null;
  const input = (frame.context && frame.context.input_message_id) || data.input_message_id || null;
  switch (frame.type) {
    case RESUMED:
      return {
        ...state,
        items: state.items.map((item) => (item.kind === "agent" && !item.final ? { ...item, gap: true } : item)),
        resync: state.running || state.waiting,
      };
    case "message.user": {
      const message = data.message || {};
      // A message the page posted is shown at once (`posted`); its event then changes nothing.
      const next = upsert(state, `m:${message.id}`, { kind: "user" }, (item) => ({
        ...item,
        id: message.id,
        parts: message.content || [],
        at: message.created_at || frame.ts,
      }));
      return { ...next, waiting: true, lastUser: message.id };
    }
    case "session.activated":
    case "turn.started":
      return { ...state, running: true, waiting: false, turn };
    case "output.message.delta":
      return upsert(state, `a:${data.message_id}`, { kind: "agent", text: "", turn, gap: state.resync }, (item) =>
        item.final || item.gap ? item : { ...item, text: item.text + (data.delta || "") },
      );
    case "output.message.reset":
      // The step's call is tried again from the start: what streamed so far is dropped, and every
      // word of the new try follows on this stream (a gap is over).
      return update(state, `a:${data.message_id}`, (item) => (item.final ? item : { ...item, text: "", gap: false }));
    case "message.agent":
    case "output.message.completed": {
      // The whole reply: it replaces whatever the deltas built, so a delta lost in a network cut
      // (or one seen twice) never shows in the end.
      const message = data.message || {};
      const error = Boolean(data.metadata && data.metadata.error);
      return upsert(state, `a:${message.id}`, { kind: "agent", text: "", turn }, (item) => ({
        ...item,
        text: textOf(message),
        final: true,
        gap: false,
        stopped: false,
        error,
        usage: data.usage || item.usage,
      }));
    }
    case "tool.approval_requested":
      return upsert(state, `t:${data.tool_call_id}`, { kind: "tool", status: "waiting", turn }, (item) => ({
        ...item,
        id: data.tool_call_id,
        name: data.tool_name,
        arguments: data.arguments,
        approval: item.approval && item.approval !== "pending" ? item.approval : "pending",
        timeout: data.approval_timeout_s,
      }));
    case "tool.approval_resolved":
      return upsert(state, `t:${data.tool_call_id}`, { kind: "tool", status: "waiting", turn }, (item) => ({
        ...item,
        id: data.tool_call_id,
        name: item.name || data.tool_name,
        approval: data.decision,
        status: data.decision === "approve" && item.status === "waiting" ? "running" : item.status,
        decidedBy: data.decided_by,
        reason: data.reason,
      }));
    case "tool.call_requested": {
      let next = state;
      for (const call of data.tool_calls || []) {
        next = upsert(next, `t:${call.id}`, { kind: "tool", turn }, (item) => ({
          ...item,
          id: call.id,
          name: call.name,
          arguments: call.arguments,
          status: item.status && item.status !== "waiting" ? item.status : "client",
        }));
      }
      return next;
    }
    case "tool.call_started": {
      const call = data.tool_call || {};
      return upsert(state, `t:${call.id}`, { kind: "tool", turn }, (item) => ({
        ...item,
        id: call.id,
        name: call.name,
        arguments: call.arguments,
        status: item.status === "success" || item.status === "error" ? item.status : "running",
      }));
    }
    case "tool.call_completed":
      return upsert(state, `t:${data.tool_call_id}`, { kind: "tool", turn }, (item) => ({
        ...item,
        id: data.tool_call_id,
        name: item.name || data.tool_name,
        status: data.status || (data.success ? "success" : "error"),
        result: data.result === undefined ? undefined : resultValue(data.result),
        error: data.error,
      }));
    case "turn.completed":
      return endTurn(state, turn, "completed", input);
    case "turn.failed": {
      const next = upsert(state, `f:${turn}`, { kind: "failed", turn }, (item) => ({
        ...item,
        error: data.error,
        code: data.error_code,
      }));
      return endTurn(next, turn, "failed", input);
    }
    case "turn.cancelled": {
      const next = upsert(state, `c:${turn}`, { kind: "cancelled", turn }, same);
      return endTurn(next, turn, "cancelled", input);
    }
    case "session.idled":
      return { ...state, running: false, resync: false };
    default:
      return state;
  }
}

/** Folds a batch of frames (what arrived since the last paint). */
export function foldAll(state, frames) {
  return frames.reduce(fold, state);
}

/** A message the page just posted (the API's answer), shown before its event arrives. */
export function posted(state, message) {
  return fold(state, { type: "message.user", data: { message }, ts: message.created_at });
}
