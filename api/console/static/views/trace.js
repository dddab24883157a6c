// One trace (an agent's turn is the trace whose id is its turn id): its totals, its spans as a
// waterfall, and for an agent's turn: fork it from a step, or pin it as a golden test.
import { html } from "../html.js";
import { Page, Status, useApi, pending, fmt } from "../ui.js";
import { Waterfall } from "./ops_waterfall.js";
import { ForkForm, PinForm } from "./ops_forms.js";
import { traceTokens, usePoll } from "./ops_util.js";

export default function Trace({ params }) {
  const id = params[0];
  const trace = useApi(id ? `v1/traces/${encodeURIComponent(id)}` : null);
  const t = trace.data;
  // A turn still running ends later: follow it until its status is set.
  usePoll(() => trace.reload(), Boolean(t && t.status === "unset" && t.agent_id), 1500);
  const isTurn = Boolean(t && t.agent_id && t.session_id);
  const replayOf = t && t.metadata && t.metadata.replay_of;
  const lastText = t ? finalText(t) : "";

  return html`<${Page} title=${t ? `Trace: ${t.name || fmt.short(t.trace_id)}` : "Trace"} wide
    actions=${isTurn ? html`<a class="button" href=${`#/sessions/${t.agent_id}/${t.session_id}`}>Its session</a>` : null}>
    ${!t ? pending(trace) :
    html`<dl class="facts ops-facts trace-facts">
        <dt>Status</dt><dd><${Status} value=${t.run_status} /></dd>
        <dt>Started</dt><dd>${fmt.time(t.start_time)}</dd>
        <dt>Duration</dt><dd>${fmt.ms(t.duration_ms)}</dd>
        <dt>Tokens</dt><dd>${fmt.tokens(traceTokens(t))} (${fmt.tokens(t.total_tokens.input)} in, ${fmt.tokens(t.total_tokens.output)} out)</dd>
        <dt>Cost</dt><dd>${fmt.cost(t.total_cost)}</dd>
        <dt>Models</dt><dd>${(t.models_used || []).join(", ") || "none"}</dd>
        <dt>Steps</dt><dd>${t.step_count}${t.errors ? html` · <span class="bad-text">${t.errors} failed</span>` : ""}</dd>
        <dt>Trace id</dt><dd><code>${t.trace_id}</code></dd>
        ${replayOf ? html`<dt>Replay of</dt><dd><a href=${`#/traces/${encodeURIComponent(replayOf)}`}><code>${fmt.short(replayOf)}</code></a></dd>` : null}
      </dl>
      <section aria-labelledby="waterfall-title">
        <h2 id="waterfall-title">Waterfall</h2>
        <p class="muted ops-hint">Each bar is a span, placed by when it started and as long as it ran. Choose one for its input and output.</p>
        <${Waterfall} spans=${t.spans} />
      </section>
      ${isTurn
        ? html`<details class="card start-card">
              <summary>Fork from a step</summary>
              <p class="muted ops-hint">Runs the turn again from a reasoning step in a new session, with your changes: the steps before it are copied, the ones after run for real (tools too).</p>
              <${ForkForm} traceId=${t.trace_id} steps=${t.steps} />
            </details>
            <details class="card start-card">
              <summary>Pin as a golden test</summary>
              <p class="muted ops-hint">A golden test replays this turn on demand (after a model or prompt change) and checks it still ends as expected.</p>
              <${PinForm} traceId=${t.trace_id} finalText=${lastText} />
            </details>`
        : null}`}
  <//>`;
}

/** The turn's last reply text (the last llm step's output), to prefill a golden test's message. */
function finalText(trace) {
  const llm = (trace.steps || []).filter((s) => s.type === "llm_call" && s.output && typeof s.output.text === "string");
  return llm.length ? llm[llm.length - 1].output.text : "";
}
