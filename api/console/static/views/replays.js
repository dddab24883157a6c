// Replays: forks of agents' turns and span replays, newest first, and a fork started by trace id
// (a turn's own page starts one from a chosen step too).
import { html, useState } from "../html.js";
import { Page, Table, Status, useApi, pending, fmt } from "../ui.js";
import { ForkForm } from "./ops_forms.js";
import { Pager, usePoll } from "./ops_util.js";

const LIMIT = 25;
const RUNNING = new Set(["pending", "running", "paused"]);

export default function Replays() {
  const [offset, setOffset] = useState(0);
  const list = useApi("v1/replays", { offset, limit: LIMIT });
  const rows = (list.data && list.data.replays) || [];
  usePoll(() => list.reload(), rows.some((r) => RUNNING.has(r.status)), 2000);

  return html`<${Page} title="Replays" wide>
    <details class="card start-card">
      <summary>Start a fork</summary>
      <p class="muted ops-hint">Easiest from a turn's trace, where you pick the step. Here, give the turn's id (its trace id).</p>
      <${ForkForm} />
    </details>
    ${pending(list) ||
    (rows.length === 0
      ? html`<p class="empty muted">No replays yet. Open a turn's trace (from <a href="#/sessions">Sessions</a> or <a href="#/traces">Traces</a>) and use <strong>Fork from a step</strong> to run it again with another model, temperature or prompt.</p>`
      : html`<${Table}
            caption="Replays"
            rows=${rows}
            rowKey=${(r) => r.replay_id}
            rowHref=${(r) => `#/replays/${r.replay_id}`}
            columns=${[
              { label: "Replay", render: (r) => html`<code>${fmt.short(r.replay_id)}</code>` },
              { label: "Kind", render: (r) => (r.kind === "fork" ? "fork" : "span replay") },
              { label: "Status", render: (r) => html`<${Status} value=${r.status} />` },
              { label: "Of turn", render: (r) => html`<a href=${`#/traces/${encodeURIComponent(r.trace_id)}`}><code>${fmt.short(r.trace_id)}</code></a>` },
              { label: "From step", render: (r) => r.fork_from_step ?? "" },
              { label: "Changes", render: (r) => Object.keys(r.modifications || {}).join(", ") || "none" },
              { label: "Progress", render: (r) => (r.total_steps ? `${r.current_step}/${r.total_steps}` : "") },
              { label: "Created", render: (r) => fmt.time(r.created_at) },
            ]}
          />
          <${Pager} offset=${offset} total=${list.data.total} limit=${LIMIT} onPage=${setOffset} />`)}
  <//>`;
}
