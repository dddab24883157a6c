// Chat with an agent: `#/chat` picks the agent, `#/chat/{agent}` starts a conversation,
// `#/chat/{agent}/{session}` resumes one (its history first: the stream replays it from the start).
// The stream (chat_stream.js) and the conversation it folds into (chat_state.js) live apart from
// the drawing (chat_items.js and here). The route's ids come encoded for a path (routes.js); ids
// from the API's answers are encoded here before they go into a path or a link.
import { html, useState, useEffect, useRef, useReducer } from "../html.js";
import { api, items } from "../api.js";
import { Page, ErrorNote, Empty, pending, useApi, useAction, navigate, notify, fmt } from "../ui.js";
import { followSession } from "./chat_stream.js";
import { EMPTY, RESUMED, foldAll } from "./chat_state.js";
import { Item } from "./chat_items.js";
import { useAccount } from "../account.js";

const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const IMAGE_MAX_BYTES = 5 * 1024 * 1024; // the API's limit for an inline image
const BATCH_MS = 30;
// Events the chat does not draw. The LLM call's record (`llm.generation`) holds the whole prompt and
// tool list each step: left out, a long session's history arrives in a fraction of the bytes.
const NOT_SHOWN = "llm.generation,input.received,reason.started,reason.completed,act.started,act.completed";

// Set when a send made a new session: the page that opens it puts the cursor back in the composer
// and reads out the reply, as the page that sent it would have.
let focusComposerOnArrival = false;
let announceOnArrival = false;

// The agents as last loaded, and for whom: a new session's page (a new mount) shows them at once,
// not "Loading…". Kept with the user they belong to, so the next user in this tab never sees them.
let knownAgents = { user: null, data: null };

export default function ChatView({ params }) {
  const [agentId, sessionId] = params;
  const account = useAccount();
  const user = (account && account.me && account.me.id) || null;
  const agents = useApi("v1/agents", { limit: 200 });
  if (agents.data) knownAgents = { user, data: agents.data };
  const known = user && knownAgents.user === user ? knownAgents.data : null;
  const list = items(agents.data || known);
  const agent = list.find((a) => encodeURIComponent(a.id) === agentId);
  // A conversation does not wait for the agents list: its sessions, its stream and its history load
  // beside it (the agent's name fills in when the list arrives), so the page is usable sooner.
  if (agentId) {
    return html`<${Page} title="Chat" wide>
      <${ErrorNote} error=${agents.error} />
      <${Conversation} agents=${list} agent=${agent} agentId=${agentId} sessionId=${sessionId} />
    <//>`;
  }
  return html`<${Page} title="Chat" wide>
    ${(!agents.data && !(agents.loading && known) && pending(agents)) || html`<${AgentPicker} agents=${list} />`}
  <//>`;
}

function AgentPicker({ agents }) {
  if (!agents.length) {
    return html`<${Empty}>No agents yet. <a href="#/agents">Create one</a> to start chatting.<//>`;
  }
  return html`<p class="muted">Choose an agent to talk to.</p>
    <ul class="agent-picker">
      ${agents.map(
        (a) => html`<li key=${a.id}>
          <a class="agent-choice card" href=${`#/chat/${encodeURIComponent(a.id)}`}>
            <strong>${a.display_name || a.name}</strong>
            ${a.description ? html`<span class="muted">${a.description}</span>` : null}
            ${(a.capabilities || []).length
              ? html`<span class="chips">
                  ${a.capabilities.map((c) => html`<span class="chip">${c.ref || c.id || c}</span>`)}
                </span>`
              : null}
          </a>
        </li>`,
      )}
    </ul>`;
}

const SHORT_TIME = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };

function sessionLabel(session) {
  const date = new Date(session.created_at);
  const when = Number.isNaN(date.getTime()) ? fmt.time(session.created_at) : date.toLocaleString(undefined, SHORT_TIME);
  return session.title ? `${session.title} · ${when}` : `Untitled · ${when}`;
}

function Conversation({ agents, agent, agentId, sessionId }) {
  const sessions = useApi(`v1/agents/${agentId}/sessions`, { limit: 100 });
  const rows = items(sessions.data)
    .slice()
    .sort((x, y) => String(y.created_at).localeCompare(String(x.created_at)));
  const name = agent ? agent.display_name || agent.name : "Agent";
  return html`<div class="chat">
    <div class="chat-bar" role="group" aria-label="Agent and session">
      <div class="chat-pick">
        <label for="chat-agent">Agent</label>
        <select id="chat-agent" value=${agentId} onChange=${(e) => navigate(`#/chat/${e.target.value}`)}>
          ${agent ? null : html`<option value=${agentId}>${fmt.short(agentId)}</option>`}
          ${agents.map((a) => html`<option value=${encodeURIComponent(a.id)}>${a.display_name || a.name}</option>`)}
        </select>
      </div>
      <div class="chat-pick">
        <label for="chat-session">Session</label>
        <select
          id="chat-session"
          value=${sessionId || ""}
          onChange=${(e) => navigate(`#/chat/${agentId}${e.target.value ? `/${e.target.value}` : ""}`)}
        >
          <option value="">New conversation</option>
          ${sessionId && !rows.some((s) => encodeURIComponent(s.id) === sessionId)
            ? html`<option value=${sessionId}>${fmt.short(sessionId)}</option>`
            : null}
          ${rows.map((s) => html`<option value=${encodeURIComponent(s.id)}>${sessionLabel(s)}</option>`)}
        </select>
      </div>
      ${sessionId ? html`<a class="button" href=${`#/chat/${agentId}`}>New conversation</a>` : null}
    </div>
    <${ErrorNote} error=${sessions.error} />
    ${sessionId
      ? html`<${Session} key=${sessionId} agentId=${agentId} sessionId=${sessionId} name=${name} />`
      : html`<${Session} key="new" agentId=${agentId} sessionId=${null} name=${name} />`}
  </div>`;
}

// The conversation follows the page's bottom while the reader is there; scrolled up, it stays put.
// It watches the list's size, not the frames: a reply's Markdown and images grow it after a render.
function useStickToBottom(list) {
  const stick = useRef(true);
  useEffect(() => {
    const root = document.documentElement;
    const scrolled = () => {
      stick.current = window.innerHeight + window.scrollY >= root.scrollHeight - 120;
    };
    const grown = new ResizeObserver(() => {
      if (stick.current) window.scrollTo({ top: root.scrollHeight });
    });
    if (list.current) grown.observe(list.current);
    window.addEventListener("scroll", scrolled, { passive: true });
    return () => {
      grown.disconnect();
      window.removeEventListener("scroll", scrolled);
    };
  }, []);
}

function LinkStatus({ link, onRetry, onRestart }) {
  if (!link) return null;
  if (link.state === "live") return html`<span class="link-state live">Live</span>`;
  if (link.state === "connecting") return html`<span class="link-state">Connecting…</span>`;
  if (link.state === "gone") return html`<span class="link-state bad">This session no longer exists.</span>`;
  if (link.state === "failed") {
    return html`<span class="link-state bad" role="alert">
      Live updates stopped: the server keeps refusing the stream.
      <button class="link" onClick=${onRestart}>Retry</button>
    </span>`;
  }
  return html`<span class="link-state warn">
    ${link.delay ? `Reconnecting in ${Math.round(link.delay / 1000)} s…` : "Reconnecting…"}
    ${link.delay ? html`<button class="link" onClick=${onRetry}>Retry now</button>` : null}
  </span>`;
}

function Session({ agentId, sessionId, name }) {
  const base = sessionId ? `v1/agents/${agentId}/sessions/${sessionId}` : null;
  const [state, dispatch] = useReducer(foldAll, EMPTY);
  const [link, setLink] = useState(null);
  const [deciding, setDeciding] = useState(null);
  // Decisions sent but not yet seen on the stream (tool.approval_resolved follows the answer).
  const [decided, setDecided] = useState({});
  const [cancelAsked, setCancelAsked] = useState(null);
  const [decisionError, setDecisionError] = useState(null);
  const stream = useRef(null);
  const announce = useRef(announceOnArrival);
  announceOnArrival = false;

  useEffect(() => {
    if (!base) return undefined;
    let queue = [];
    let timer = null;
    // Frames come one network task each (a word of the reply); drawing them a few at a time keeps
    // a long history or a fast reply from redrawing the page per frame.
    const flush = () => {
      timer = null;
      const frames = queue;
      queue = [];
      dispatch(frames);
    };
    const push = (frame) => {
      queue.push(frame);
      timer ||= setTimeout(flush, BATCH_MS);
    };
    stream.current = followSession(`${base}/sse`, {
      onFrame: push,
      // In order with the frames: those of the new connection come after it.
      onResume: () => push({ type: RESUMED }),
      onState: setLink,
      check: () => api.get(base),
      query: { exclude: NOT_SHOWN },
    });
    return () => {
      if (timer) clearTimeout(timer);
      stream.current.close();
      stream.current = null;
    };
  }, [base]);

  const busy = state.running || state.waiting;
  // The reply to what this page sent is read out once its turn is over (not each streamed word).
  useEffect(() => {
    if (busy || !announce.current) return;
    announce.current = false;
    const last = [...state.items].reverse().find((item) => item.kind === "agent" || item.kind === "failed");
    if (last && last.kind === "failed") notify(`The turn failed: ${last.error || ""}`);
    else if (last) notify(`${name} replied: ${last.text}`);
  }, [busy]);

  const list = useRef(null);
  useStickToBottom(list);

  const decide = async (item, decision) => {
    setDeciding(item.id);
    setDecisionError(null);
    try {
      await api.post(`${base}/tool-approvals/${encodeURIComponent(item.id)}`, { decision });
      setDecided((known) => ({ ...known, [item.id]: decision }));
      notify(decision === "approve" ? `Approved ${item.name}` : `Denied ${item.name}`);
    } catch (error) {
      notify(`The decision was not taken: ${error.message}`);
      setDecisionError(error);
    } finally {
      setDeciding(null);
    }
  };

  const cancel = useAction(async () => {
    await api.post(`${base}/cancel`);
    // The turn ends a second or two later (turn.cancelled): until then the button says so.
    setCancelAsked(state.turn);
    notify("Cancelling the turn");
  });

  const onSent = (message, session) => {
    announce.current = true;
    if (session) {
      // A new session: its page takes over (and replays what was just posted from the stream).
      focusComposerOnArrival = true;
      announceOnArrival = true;
      navigate(`#/chat/${agentId}/${encodeURIComponent(session.id)}`);
      return;
    }
    dispatch([{ type: "message.user", data: { message }, ts: message.created_at }]);
  };

  const visible = state.items;
  const asking = visible.some((item) => item.kind === "tool" && item.approval === "pending" && !decided[item.id]);
  // While the turn waits for the user, no "typing" dots: the approval card says what it waits for.
  const thinking = busy && !asking && !visible.some((item) => item.kind === "agent" && !item.final);
  const activity = asking ? "Waiting for your approval" : state.waiting && !state.running ? "Queued" : "Working…";
  return html`<div class="chat-session">
    <div class="chat-status">
      <${LinkStatus}
        link=${link}
        onRetry=${() => stream.current && stream.current.retryNow()}
        onRestart=${() => stream.current && stream.current.restart()}
      />
      ${busy ? html`<span class=${`link-state ${asking ? "warn" : "running"}`}>${activity}</span>` : null}
    </div>
    ${!sessionId
      ? html`<div class="chat-empty">
          <p><strong>New conversation with ${name}.</strong></p>
          <p class="muted">Send a message to start. Earlier conversations are in the Session list.</p>
        </div>`
      : null}
    ${sessionId && link && link.state !== "connecting" && !visible.length
      ? html`<p class="chat-empty muted">No messages yet.</p>`
      : null}
    <ol class="transcript" aria-label="Conversation" ref=${list}>
      ${visible.map(
        (item) => html`<${Item}
          key=${item.key}
          item=${item}
          agentName=${name}
          onDecide=${decide}
          deciding=${deciding}
          decided=${decided}
        />`,
      )}
      ${thinking
        ? html`<li class="msg agent thinking" aria-hidden="true">
            <h2 class="msg-who">${name}</h2>
            <div class="bubble"><span class="dots"><i></i><i></i><i></i></span></div>
          </li>`
        : null}
    </ol>
    <${ErrorNote} error=${decisionError} />
    <${Composer}
      agentId=${agentId}
      sessionId=${sessionId}
      name=${name}
      running=${state.running}
      onSent=${onSent}
      onCancel=${cancel.run}
      cancelling=${cancel.busy || (state.running && cancelAsked === state.turn)}
      cancelError=${cancel.error}
      gone=${link && link.state === "gone"}
    />
  </div>`;
}

function newKey() {
  // An Idempotency-Key per message: a retry after a lost answer stores it once (docs/api.md).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const dataUrl = String(reader.result);
      resolve({ name: file.name, media_type: file.type, base64: dataUrl.slice(dataUrl.indexOf(",") + 1), dataUrl });
    };
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function Composer({ agentId, sessionId, name, running, onSent, onCancel, cancelling, cancelError, gone }) {
  const [text, setText] = useState("");
  const [images, setImages] = useState([]);
  const [imageError, setImageError] = useState(null);
  // The message being sent, until it is stored: its body and Idempotency-Key, and the session a
  // first message made. A retry after a failure (a lost answer) sends the same message with the same
  // key to that same session, so the server stores it once; a session made per attempt would not
  // share the key (it is per session) and would hold a copy each.
  const attempt = useRef({ body: null, key: null, session: null });
  const box = useRef(null);

  useEffect(() => {
    if (focusComposerOnArrival && box.current) {
      focusComposerOnArrival = false;
      box.current.focus();
    }
  }, []);

  const send = useAction(async () => {
    const parts = [];
    if (text.trim()) parts.push({ type: "text", text });
    for (const image of images) parts.push({ type: "image", base64: image.base64, media_type: image.media_type });
    if (!parts.length) return;
    const tried = attempt.current;
    const body = JSON.stringify(parts);
    // An edited message is a new one (its own key); the session made for the first try still serves.
    if (tried.body !== body) attempt.current = { body, key: newKey(), session: tried.session };
    let session = null;
    // `agentId`/`sessionId` come from the route already encoded for a path (routes.js); the API's
    // own ids are encoded here.
    let target = sessionId;
    if (!target) {
      if (!attempt.current.session) {
        const title = (text.trim().split("\n")[0] || "Image").slice(0, 60);
        attempt.current.session = await api.post(`v1/agents/${agentId}/sessions`, { title });
      }
      session = attempt.current.session;
      target = encodeURIComponent(session.id);
    }
    const message = await api.post(
      `v1/agents/${agentId}/sessions/${target}/messages`,
      { message: { role: "user", content: parts } },
      { headers: { "Idempotency-Key": attempt.current.key } },
    );
    attempt.current = { body: null, key: null, session: null };
    setText("");
    setImages([]);
    onSent(message, session);
  });

  const attach = async (event) => {
    setImageError(null);
    const chosen = Array.from(event.target.files || []);
    event.target.value = "";
    const refused = chosen.find((f) => !IMAGE_TYPES.includes(f.type) || f.size > IMAGE_MAX_BYTES);
    if (refused) {
      setImageError(new Error(`${refused.name}: images must be PNG, JPEG, GIF or WebP, at most 5 MB.`));
      return;
    }
    const read = await Promise.all(chosen.map(readImage)).catch((error) => {
      setImageError(error);
      return [];
    });
    setImages((current) => [...current, ...read]);
  };

  const keyDown = (event) => {
    // Enter sends, Shift+Enter is a new line; Enter that ends an IME composition does neither.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (!send.busy) send.run();
    }
  };

  const empty = !text.trim() && !images.length;
  return html`<form
    class="composer"
    aria-label="Send a message"
    onSubmit=${(event) => {
      event.preventDefault();
      send.run();
    }}
  >
    ${images.length
      ? html`<ul class="attachments" aria-label="Attached images">
          ${images.map(
            (image, i) => html`<li key=${i}>
              <img src=${image.dataUrl} alt=${image.name} />
              <button
                type="button"
                class="remove"
                aria-label=${`Remove ${image.name}`}
                onClick=${() => setImages(images.filter((_, j) => j !== i))}
              >
                ×
              </button>
            </li>`,
          )}
        </ul>`
      : null}
    <label for="chat-input" class="sr-only">Message</label>
    <textarea
      id="chat-input"
      ref=${box}
      rows="2"
      placeholder=${`Message ${name}…`}
      value=${text}
      disabled=${gone}
      onInput=${(e) => setText(e.target.value)}
      onKeyDown=${keyDown}
    ></textarea>
    <div class="composer-bar">
      <label class="button attach">
        <input type="file" class="sr-only" accept=${IMAGE_TYPES.join(",")} multiple onChange=${attach} disabled=${gone} />
        <svg aria-hidden="true" viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">
          <path d="M21.4 11.1l-9.2 9.2a6 6 0 01-8.5-8.5l9.2-9.2a4 4 0 015.7 5.7l-9.2 9.2a2 2 0 01-2.8-2.8l8.5-8.5" />
        </svg>
        Attach image
      </label>
      <span class="composer-hint muted">Enter to send · Shift+Enter for a new line</span>
      ${running
        ? html`<button type="button" class="danger" onClick=${onCancel} disabled=${cancelling}>
            ${cancelling ? "Cancelling…" : "Cancel"}
          </button>`
        : null}
      <button type="submit" class="primary" disabled=${send.busy || empty || gone}>${send.busy ? "Sending…" : "Send"}</button>
    </div>
    <${ErrorNote} error=${send.error || imageError || cancelError} />
  </form>`;
}
