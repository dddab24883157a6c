// One session for operators: what it is, its turns (each a trace), its event timeline, and its
// Temporal workflow (runs, pending activities, a link into the Temporal UI when the server has one).
import { html, useState } from "../html.js";
import { Page, Table, Status, ErrorNote, useApi, pending, fmt } from "../ui.js";
import { EventTimeline } from "./ops_events.js";
import { agentName, traceTokens } from "./ops_util.js";

const TURN_ENDS = new Set(["turn.completed", "turn.failed", "turn.cancelled", "session.idled"]);
// A session in any other status may have a turn running: its timeline follows new events.
const RESTING = new Set(["idle", "started"]);

export default function SessionDetail({ params }) {
  const [agentId, sessionId] = params;
  const base = `v1/agents/${agentId}/sessions/${sessionId}`;
  const session = useApi(base);
  const agent = useApi(`v1/agents/${agentId}`);
  const turns = useApi("v1/traces", { session_id: sessionId, limit: 50 });
  const [running, setRunning] = useState(false);
  const s = session.data;
  const live = running || (s && !RESTING.has(s.status) && !s.ended_at);
  const heard = (events) => {
    const last = events[events.length - 1];
    if (events.some((e) => TURN_ENDS.has(e.type))) {
      setRunning(false);
      session.reload();
      turns.reload();
    } else if (last && last.type !== "session.idled") setRunning(true);
  };
  const title = s ? s.title || `Session ${fmt.short(s.id)}` : "Session";

  return html`<${Page} title=${title} wide
    actions=${html`<a class="button" href=${`#/chat/${agentId}/${sessionId}`}>Open in chat</a>`}>
    ${pending(session) ||
    html`<dl class="facts ops-facts">
      <dt>Agent</dt><dd><a href=${`#/agents/${agentId}`}>${agentName(agent.data) || fmt.short(agentId)}</a></dd>
      <dt>Status</dt><dd><${Status} value=${s.ended_at ? "ended" : s.status} /></dd>
      <dt>Session id</dt><dd><code>${s.id}</code></dd>
      <dt>Created</dt><dd>${fmt.time(s.created_at)}</dd>
      <dt>Tokens</dt><dd>${fmt.tokens(s.usage.input_tokens)} in, ${fmt.tokens(s.usage.output_tokens)} out</dd>
      <dt>Cost</dt><dd>${fmt.cost(s.usage.cost)}</dd>
    </dl>`}

    <section aria-labelledby="turns-title">
      <h2 id="turns-title">Turns</h2>
      ${pending(turns) || html`<${Turns} traces=${turns.data.traces || []} />`}
    </section>

    <section aria-labelledby="events-title">
      <h2 id="events-title">Event timeline</h2>
      <${EventTimeline} path=${`${base}/events`} live=${live} onEvents=${heard} />
    </section>

    <section aria-labelledby="workflow-title">
      <h2 id="workflow-title">Workflow</h2>
      <${Workflow} path=${`${base}/workflow`} />
    </section>
  <//>`;
}

function Turns({ traces }) {
  if (!traces.length) return html`<p class="empty muted">No turns yet: a turn starts when a message is posted.</p>`;
  // The list is newest first; a session reads oldest first.
  const rows = [...traces].reverse();
  return html`<${Table}
    caption="Turns"
    rows=${rows}
    rowKey=${(t) => t.trace_id}
    rowHref=${(t) => `#/traces/${encodeURIComponent(t.trace_id)}`}
    columns=${[
      { label: "Turn", render: (t) => html`<code>${fmt.short(t.trace_id)}</code>` },
      { label: "Status", render: (t) => html`<${Status} value=${t.run_status} />` },
      { label: "Started", render: (t) => fmt.time(t.start_time) },
      { label: "Duration", render: (t) => fmt.ms(t.duration_ms) },
      { label: "Steps", render: (t) => t.step_count },
      { label: "Tokens", render: (t) => fmt.tokens(traceTokens(t)) },
      { label: "Cost", render: (t) => fmt.cost(t.total_cost) },
    ]}
  />`;
}

function Workflow({ path }) {
  const wf = useApi(path);
  if (wf.error) {
    return html`<${ErrorNote} error=${wf.error} />
      <button type="button" onClick=${wf.reload}>Try again</button>`;
  }
  if (!wf.data) return pending(wf);
  const w = wf.data;
  return html`<div class="card workflow">
    <div class="actions wf-actions">
      ${w.temporal_ui_url
        ? html`<a class="button" href=${w.temporal_ui_url} target="_blank" rel="noopener noreferrer">Open in the Temporal UI</a>`
        : html`<span class="muted">Set <code>TEMPORAL_UI_URL</code> on the server for a link into the Temporal UI.</span>`}
      <button type="button" onClick=${wf.reload} disabled=${wf.loading}>Refresh workflow</button>
    </div>
    <dl class="facts">
      <dt>Workflow id</dt><dd><code>${w.workflow_id}</code></dd>
      <dt>Status</dt><dd><${Status} value=${w.status} /></dd>
      ${w.run_id ? html`<dt>Current run</dt><dd><code>${w.run_id}</code></dd>` : null}
      ${w.task_queue ? html`<dt>Task queue</dt><dd><code>${w.task_queue}</code></dd>` : null}
      <dt>History events</dt><dd>${w.history_length}</dd>
      <dt>Turn running</dt><dd>${w.current_turn_id ? html`<a href=${`#/traces/${w.current_turn_id}`}><code>${fmt.short(w.current_turn_id)}</code></a>` : "none"}</dd>
    </dl>
    <h3>Pending activities</h3>
    ${w.pending_activities.length
      ? html`<${Table}
          caption="Pending activities"
          rows=${w.pending_activities}
          rowKey=${(a) => a.activity_id}
          columns=${[
            { label: "Activity", render: (a) => a.activity_type },
            { label: "State", render: (a) => html`<${Status} value=${a.state} />` },
            { label: "Attempt", render: (a) => a.attempt },
            { label: "Last failure", render: (a) => a.last_failure || "" },
            { label: "Last heartbeat", render: (a) => fmt.time(a.last_heartbeat) },
          ]}
        />`
      : html`<p class="muted">None: no step of this session is waiting on a worker.</p>`}
    <h3>Runs</h3>
    ${w.runs.length
      ? html`<${Table}
          caption="Workflow runs"
          rows=${w.runs}
          rowKey=${(r) => r.run_id}
          columns=${[
            { label: "Run", render: (r) => html`<code>${fmt.short(r.run_id)}</code>` },
            { label: "Status", render: (r) => html`<${Status} value=${r.status} />` },
            { label: "Started", render: (r) => fmt.time(r.started_at) },
            { label: "Closed", render: (r) => fmt.time(r.closed_at) },
          ]}
        />`
      : html`<p class="muted">No runs yet: the workflow starts with the session's first message.</p>`}
  </div>`;
}
