// Small pieces the operator views share: list envelopes, polling, agents by id, event summaries.
import { html, useState, useEffect, useRef } from "../html.js";
import { api, items } from "../api.js";
import { fmt } from "../ui.js";

/** The rows of a list answer, whatever its envelope (`replays`, `golden_tests`, `runs`, `data`...). */
export function listOf(answer, key) {
  if (answer && key && Array.isArray(answer[key])) return answer[key];
  return items(answer);
}

/** Calls `tick` every `ms` while `active` (a run still going), and stops when the view goes. */
export function usePoll(tick, active, ms = 1000) {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    if (!active) return undefined;
    const timer = setInterval(() => latest.current(), ms);
    return () => clearInterval(timer);
  }, [active, ms]);
}

/** The user's agents as {id: agent}, for naming them in lists (archived ones too: old sessions). */
export function useAgents() {
  const [agents, setAgents] = useState({ list: [], byId: {} });
  useEffect(() => {
    let live = true;
    api
      .get("v1/agents", { include_archived: true, limit: 200 })
      .then((answer) => {
        const list = items(answer);
        if (live) setAgents({ list, byId: Object.fromEntries(list.map((a) => [a.id, a])) });
      })
      .catch(() => null);
    return () => {
      live = false;
    };
  }, []);
  return agents;
}

export function agentName(agent) {
  return agent ? agent.display_name || agent.name : "";
}

/** The text of a message's content parts (tool calls named). */
export function messageText(message) {
  if (!message) return "";
  const parts = Array.isArray(message.content) ? message.content : [];
  return parts
    .map((p) => (p.type === "text" ? p.text : p.type === "tool_call" ? `→ ${p.name}(${args(p.arguments)})` : `[${p.type}]`))
    .join(" ");
}

function args(value) {
  const text = value === undefined ? "" : JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}

function resultText(result) {
  if (Array.isArray(result)) return result.map((p) => p.text || "").join(" ");
  return result === undefined || result === null ? "" : JSON.stringify(result);
}

function tokens(usage) {
  if (!usage) return "";
  return `${fmt.tokens((usage.input_tokens || 0) + (usage.output_tokens || 0))} tokens`;
}

/** One line saying what a stored event holds, by its type (docs/api.md, "Event types"). */
export function eventSummary(event) {
  const d = event.data || {};
  switch (event.type) {
    case "message.user":
    case "input.received":
      return messageText(d.message);
    case "message.agent":
    case "output.message.completed":
      return [messageText(d.message), tokens(d.usage)].filter(Boolean).join(" · ");
    case "reason.started":
      return `step ${d.metadata?.iteration ?? ""} · ${d.metadata?.model ?? ""}`;
    case "llm.generation": {
      const m = d.metadata || {};
      return [m.model, tokens(m.usage), fmt.ms(m.duration_ms), m.error ? `error: ${m.error}` : ""]
        .filter(Boolean)
        .join(" · ");
    }
    case "reason.completed":
      return d.has_tool_calls ? `${d.tool_call_count} tool call(s)` : d.text_preview || "";
    case "act.started":
      return (d.tool_calls || []).map((c) => c.name).join(", ");
    case "tool.call_started":
      return d.tool_call ? `${d.tool_call.name}(${args(d.tool_call.arguments)})` : "";
    case "tool.call_completed":
      return `${d.tool_name} · ${d.status}${d.error ? `: ${d.error}` : d.result ? ` → ${resultText(d.result)}` : ""}`;
    case "act.completed":
      return `${d.success_count} ok, ${d.error_count} failed`;
    case "tool.approval_requested":
      return `${d.tool_name}(${args(d.arguments)}) waits for approval`;
    case "tool.approval_resolved":
      return `${d.tool_name}: ${d.decision}${d.reason ? ` (${d.reason})` : ""}`;
    case "tool.call_requested":
      return (d.tool_calls || []).map((c) => c.name).join(", ");
    case "turn.completed":
      return `${d.iterations} step(s) in ${fmt.ms(d.duration_ms)}`;
    case "turn.failed":
      return `${d.error_code || ""} ${d.error || ""}`.trim();
    default:
      return "";
  }
}

/** A badge class for an event type: where a turn ends well or badly. */
export function eventKind(type) {
  if (type === "turn.failed" || type === "turn.cancelled") return "bad";
  if (type === "turn.completed") return "good";
  if (type.startsWith("message.") || type === "input.received") return "msg";
  if (type.startsWith("tool.") || type.startsWith("act.")) return "tool";
  if (type.startsWith("reason.") || type === "llm.generation" || type.startsWith("output.")) return "llm";
  return "neutral";
}

/** A span's or trace's tokens: input + output, "" when it has none. */
export function spanTokens(span) {
  const n = (span.input_tokens || 0) + (span.output_tokens || 0);
  return n ? fmt.tokens(n) : "";
}

export function traceTokens(trace) {
  const t = trace.total_tokens || {};
  return (t.input || 0) + (t.output || 0);
}

/** A labelled <select> of simple options [{value, label}]. */
export function Select({ id, label, value, options, onChange }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} value=${value} onChange=${(e) => onChange(e.currentTarget.value)}>
      ${options.map((o) => html`<option value=${o.value}>${o.label}</option>`)}
    </select>
  </div>`;
}

/** Previous / next over an offset-paged list. */
export function Pager({ offset, total, limit, onPage }) {
  if (total <= limit && offset === 0) return html`<p class="muted pager-count">${total} in all</p>`;
  return html`<nav class="pager" aria-label="Pages">
    <button type="button" disabled=${offset === 0} onClick=${() => onPage(Math.max(0, offset - limit))}>Previous</button>
    <span class="muted">${offset + 1}–${Math.min(offset + limit, total)} of ${total}</span>
    <button type="button" disabled=${offset + limit >= total} onClick=${() => onPage(offset + limit)}>Next</button>
  </nav>`;
}
