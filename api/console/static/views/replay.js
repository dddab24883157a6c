// One replay: where it is (followed every second while it runs), its controls when it runs step by
// step, what it changed against the original (`changes_from_original`), and for a fork the events
// of its own session as they happen.
import { html, useState } from "../html.js";
import { api } from "../api.js";
import { Page, Table, Status, ErrorNote, useApi, useAction, pending, fmt, notify } from "../ui.js";
import { EventTimeline } from "./ops_events.js";
import { usePoll } from "./ops_util.js";

const RUNNING = new Set(["pending", "running", "paused"]);

export default function Replay({ params }) {
  const id = params[0];
  const replay = useApi(id ? `v1/replays/${id}` : null);
  const r = replay.data;
  const running = Boolean(r && RUNNING.has(r.status));
  usePoll(() => replay.reload(), running, 1000);
  const fork = useApi(r && r.session_id ? `v1/sessions/${r.session_id}` : null, null, [r && r.session_id]);

  return html`<${Page} title=${r ? `Replay ${fmt.short(r.replay_id)}` : "Replay"} wide
    actions=${r && fork.data
      ? html`<a class="button" href=${`#/sessions/${fork.data.agent_id}/${r.session_id}`}>Fork's session</a>`
      : null}>
    ${!r ? pending(replay) :
    html`<div class="replay-status" role="status" aria-live="polite">
        <${Status} value=${r.status} />
        ${r.total_steps
          ? html`<label class="replay-progress">
              <span>Step ${r.current_step} of ${r.total_steps}</span>
              <progress max=${r.total_steps} value=${r.current_step}>${r.current_step}/${r.total_steps}</progress>
            </label>`
          : null}
        ${r.holding_at ? html`<span>holding before step ${r.holding_at}</span>` : null}
      </div>
      <${ErrorNote} error=${r.error ? { message: r.error } : null} />
      <dl class="facts ops-facts">
        <dt>Kind</dt><dd>${r.kind === "fork" ? `fork (${r.mode})` : "span replay"}</dd>
        <dt>Original turn</dt><dd><a href=${`#/traces/${encodeURIComponent(r.trace_id)}`}><code>${fmt.short(r.trace_id)}</code></a></dd>
        ${r.fork_from_step ? html`<dt>From step</dt><dd>${r.fork_from_step}</dd>` : null}
        <dt>Modifications</dt><dd>${Object.keys(r.modifications || {}).length ? html`<code>${JSON.stringify(r.modifications)}</code>` : "none"}</dd>
        <dt>Started</dt><dd>${fmt.time(r.started_at || r.created_at)}</dd>
        ${r.completed_at ? html`<dt>Finished</dt><dd>${fmt.time(r.completed_at)}</dd>` : null}
        ${r.result_trace_id
          ? html`<dt>Its trace</dt><dd><a href=${`#/traces/${encodeURIComponent(r.result_trace_id)}`}><code>${fmt.short(r.result_trace_id)}</code></a></dd>`
          : null}
      </dl>
      ${r.kind === "fork" && running ? html`<${Controls} replay=${r} onDone=${replay.reload} />` : null}
      <${Result} replay=${r} />
      ${r.kind !== "fork" ? html`<${SpanDiffs} replay=${r} />` : null}
      ${r.session_id
        ? html`<section aria-labelledby="fork-events-title">
            <h2 id="fork-events-title">The fork's events</h2>
            <${EventTimeline} path=${`v1/sessions/${r.session_id}/events`} live=${running} />
          </section>`
        : null}`}
  <//>`;
}

function Controls({ replay, onDone }) {
  const [jump, setJump] = useState("");
  const control = useAction(async (action, step) => {
    const body = step ? { action, step: Number(step) } : { action };
    const answer = await api.post(`v1/replays/${replay.replay_id}/control`, body);
    notify(`${action}: ${answer.status}`);
    onDone();
    return answer;
  });
  return html`<section class="card controls" aria-labelledby="controls-title">
    <h2 id="controls-title">Controls</h2>
    <div class="actions">
      <button type="button" onClick=${() => control.run("play")} disabled=${control.busy}>Play to the end</button>
      <button type="button" onClick=${() => control.run("step")} disabled=${control.busy}>One step</button>
      <button type="button" onClick=${() => control.run("pause")} disabled=${control.busy}>Pause</button>
      <button type="button" class="danger" onClick=${() => control.run("stop")} disabled=${control.busy}>Stop</button>
    </div>
    <form class="inline" aria-label="Jump to a step" onSubmit=${(e) => { e.preventDefault(); control.run("jump", jump); }}>
      <div class="field">
        <label for="jump-step">Run on to step</label>
        <input id="jump-step" type="number" min=${replay.current_step + 1} max=${replay.total_steps} required
          value=${jump} onInput=${(e) => setJump(e.currentTarget.value)} />
      </div>
      <button type="submit" disabled=${control.busy}>Jump</button>
    </form>
    <${ErrorNote} error=${control.error} />
  </section>`;
}

function value(v) {
  if (v === null || v === undefined) return html`<span class="muted">none</span>`;
  if (typeof v === "string") return v;
  return html`<code>${JSON.stringify(v)}</code>`;
}

function Result({ replay }) {
  const result = replay.result;
  if (!result) {
    return RUNNING.has(replay.status)
      ? html`<p class="muted" role="status">Running: the result and its changes show here when the turn ends.</p>`
      : null;
  }
  const changes = result.changes_from_original || [];
  return html`<section aria-labelledby="result-title">
    <h2 id="result-title">Result</h2>
    <dl class="facts ops-facts">
      <dt>Outcome</dt><dd><${Status} value=${result.outcome || replay.status} /></dd>
      <dt>Duration</dt><dd>${fmt.ms(result.duration_ms)}</dd>
      <dt>Cost</dt><dd>${fmt.cost(result.total_cost)}</dd>
      <dt>Final output</dt><dd class="final-output">${result.final_output || html`<span class="muted">none</span>`}</dd>
    </dl>
    <h3 id="changes-title">Changes from the original</h3>
    ${changes.length
      ? html`<${Table}
          caption="Changes from the original"
          rows=${changes}
          rowKey=${(c) => `${c.step}-${c.field}-${JSON.stringify(c.modified)}`}
          columns=${[
            { label: "Step", render: (c) => c.step },
            { label: "Field", render: (c) => c.field },
            { label: "Original", render: (c) => value(c.original) },
            { label: "This run", render: (c) => value(c.modified) },
          ]}
        />`
      : html`<p class="muted">None: this run did what the original did.</p>`}
  </section>`;
}

function SpanDiffs({ replay }) {
  const diff = useApi(`v1/traces/${encodeURIComponent(replay.trace_id)}/replay/${replay.replay_id}/diff`, null, [replay.status]);
  if (!diff.data) return pending(diff);
  return html`<section aria-labelledby="diffs-title">
    <h2 id="diffs-title">Span diffs</h2>
    ${diff.data.diffs.map(
      (d) => html`<div class="card diff">
        <h3>${d.span_name} <code>${d.span_id}</code></h3>
        ${d.reason ? html`<p class="muted">${d.reason}</p>` : null}
        <div class="wf-io">
          <div><h4>Original output</h4><pre tabindex="0"><code>${fmt.json(d.original_output)}</code></pre></div>
          <div><h4>Replayed output</h4><pre tabindex="0"><code>${d.mutated_output === null ? "(not re-executed)" : fmt.json(d.mutated_output)}</code></pre></div>
        </div>
      </div>`,
    )}
  </section>`;
}
