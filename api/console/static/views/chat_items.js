// The pieces of a conversation as the chat draws them: messages, tool cards (with their approval),
// and how a turn ended. Each takes an item of chat_state.js.
import { html } from "../html.js";
import { Markdown, Badge } from "../ui.js";

const TOOL_STATUS = {
  waiting: ["awaiting approval", "warn"],
  client: ["waiting for the client", "warn"],
  running: ["running", "neutral"],
  success: ["done", "good"],
  error: ["failed", "bad"],
  timeout: ["timed out", "bad"],
  denied: ["denied", "bad"],
};

/** JSON on one line when short, else indented; a string result shows as its text. */
function JsonValue({ value }) {
  if (value === undefined) return null;
  if (typeof value === "string") return html`<pre class="tool-json">${value}</pre>`;
  const flat = JSON.stringify(value);
  const shown = flat && flat.length <= 72 ? flat : JSON.stringify(value, null, 2);
  return html`<pre class="tool-json">${shown}</pre>`;
}

function imageSource(part) {
  if (part.url) return part.url;
  if (part.base64) return `data:${part.media_type || "image/png"};base64,${part.base64}`;
  return null;
}

export function UserMessage({ item }) {
  const text = (item.parts || []).filter((p) => p.type === "text").map((p) => p.text).join("\n");
  const images = (item.parts || []).filter((p) => p.type === "image").map(imageSource).filter(Boolean);
  return html`<li class="msg user">
    <h2 class="sr-only">You said</h2>
    <div class="bubble">
      ${images.length
        ? html`<div class="msg-images">
            ${images.map((src, i) => html`<img src=${src} alt=${`Attached image ${i + 1}`} loading="lazy" />`)}
          </div>`
        : null}
      ${text ? html`<p class="msg-text">${text}</p>` : null}
    </div>
  </li>`;
}

export function AgentMessage({ item, name }) {
  // A step that only calls tools has no text: its tool cards say what it did.
  if (!item.text && item.final && !item.stopped) return null;
  const streaming = !item.final;
  return html`<li class=${`msg agent${item.error ? " failed" : ""}`}>
    <h2 class="msg-who">${item.error ? "Error" : name || "Agent"}</h2>
    <div class="bubble" data-testid="reply" aria-busy=${streaming ? "true" : "false"}>
      ${item.text ? html`<${Markdown} text=${item.text} class="reply" />` : null}
      ${streaming && item.gap
        ? html`<p class="muted resync">Resyncing: the rest follows when the reply is complete.</p>`
        : streaming
          ? html`<span class="cursor" aria-hidden="true"></span>`
          : null}
      ${item.stopped ? html`<p class="muted stopped">Stopped: the turn was cancelled.</p>` : null}
    </div>
  </li>`;
}

function Approval({ item, onDecide, busy, sent }) {
  if (item.approval === "pending" && sent) {
    return html`<p class="approval-note muted" role="status">${sent === "approve" ? "Approved" : "Denied"}: waiting for the agent…</p>`;
  }
  if (item.approval === "pending") {
    return html`<div class="approval" role="group" aria-label=${`Approval for ${item.name}`}>
      <p><strong>Approval needed.</strong> The agent wants to run <code>${item.name}</code> with these arguments.</p>
      <div class="actions">
        <button class="primary" disabled=${busy} onClick=${() => onDecide(item, "approve")} aria-label=${`Approve ${item.name}`}>
          Approve
        </button>
        <button class="danger" disabled=${busy} onClick=${() => onDecide(item, "deny")} aria-label=${`Deny ${item.name}`}>
          Deny
        </button>
      </div>
    </div>`;
  }
  if (item.approval === "approve") return html`<p class="approval-note good">Approved${item.decidedBy === "user" ? " by you" : ""}.</p>`;
  if (item.approval === "deny") {
    const who = item.decidedBy === "timeout" ? "no decision in time" : "by you";
    return html`<p class="approval-note bad">Denied (${who})${item.reason ? `: ${item.reason}` : ""}.</p>`;
  }
  if (item.approval === "expired") return html`<p class="approval-note muted">Not decided before the turn ended.</p>`;
  return null;
}

export function ToolCard({ item, onDecide, busy, sent }) {
  const [label, kind] = TOOL_STATUS[item.status] || [item.status || "…", "neutral"];
  const status = item.approval === "pending" ? "waiting" : item.status;
  return html`<li class=${`tool-card status-${status}`}>
    <article aria-label=${`Tool call ${item.name}`}>
      <header class="tool-head">
        <span class="tool-icon" aria-hidden="true">⚙</span>
        <code class="tool-name">${item.name}</code>
        <${Badge} kind=${kind}>${item.approval === "pending" ? "awaiting approval" : label}<//>
      </header>
      <dl class="tool-io">
        <dt>Arguments</dt>
        <dd><${JsonValue} value=${item.arguments || {}} /></dd>
        ${item.result !== undefined
          ? html`<dt>Result</dt>
              <dd><${JsonValue} value=${item.result} /></dd>`
          : null}
        ${item.error ? html`<dt>Error</dt><dd class="tool-error">${item.error}</dd>` : null}
      </dl>
      ${item.approval ? html`<${Approval} item=${item} onDecide=${onDecide} busy=${busy} sent=${sent} />` : null}
    </article>
  </li>`;
}

export function TurnFailed({ item }) {
  return html`<li class="turn-end failed" role="alert">
    <strong>The turn failed:</strong> ${item.error || "no reason was given."}
    ${item.code ? html` <${Badge} kind="bad">${item.code}<//>` : null}
  </li>`;
}

export function TurnCancelled() {
  return html`<li class="turn-end cancelled">Turn cancelled.</li>`;
}

export function Item({ item, agentName, onDecide, deciding, decided }) {
  switch (item.kind) {
    case "user":
      return html`<${UserMessage} item=${item} />`;
    case "agent":
      return html`<${AgentMessage} item=${item} name=${agentName} />`;
    case "tool":
      return html`<${ToolCard}
        item=${item}
        onDecide=${onDecide}
        busy=${deciding === item.id}
        sent=${decided && decided[item.id]}
      />`;
    case "failed":
      return html`<${TurnFailed} item=${item} />`;
    case "cancelled":
      return html`<${TurnCancelled} item=${item} />`;
    default:
      return null;
  }
}
