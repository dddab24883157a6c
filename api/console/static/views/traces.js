// Every trace of the user (agents' turns and what apps sent), newest first, filtered by status and
// model on the server; the name filter narrows the page shown (the list route has no name filter).
import { html, useState } from "../html.js";
import { Page, Table, Status, useApi, pending, fmt } from "../ui.js";
import { traceTokens, Select } from "./ops_util.js";

const LIMIT = 50;
const STATUSES = [
  { value: "", label: "Any status" },
  { value: "completed", label: "Completed" },
  { value: "failed", label: "Failed" },
  { value: "running", label: "Running" },
];

export default function Traces() {
  const [filters, setFilters] = useState({ status: "", model: "", name: "" });
  const [draft, setDraft] = useState({ model: "", name: "" });
  // Cursor paging (a keyset: traces arriving meanwhile do not shift pages); the stack goes back.
  const [cursors, setCursors] = useState([null]);
  const cursor = cursors[cursors.length - 1];
  const list = useApi("v1/traces", { status: filters.status, model: filters.model, cursor, limit: LIMIT });
  const all = (list.data && list.data.traces) || [];
  const needle = filters.name.toLowerCase();
  const rows = needle ? all.filter((t) => (t.name || "").toLowerCase().includes(needle)) : all;
  const next = list.data && list.data.pagination && list.data.pagination.next_cursor;
  const apply = (change) => {
    setFilters((f) => ({ ...f, ...change }));
    setCursors([null]);
  };

  return html`<${Page} title="Traces" wide>
    <form class="inline filters" role="search" aria-label="Filter traces"
      onSubmit=${(e) => { e.preventDefault(); apply({ model: draft.model.trim(), name: draft.name.trim() }); }}>
      <div class="field">
        <label for="traces-name">Name contains</label>
        <input id="traces-name" type="search" value=${draft.name} onInput=${(e) => setDraft({ ...draft, name: e.currentTarget.value })} />
      </div>
      <${Select} id="traces-status" label="Status" value=${filters.status} options=${STATUSES} onChange=${(v) => apply({ status: v })} />
      <div class="field">
        <label for="traces-model">Model</label>
        <input id="traces-model" placeholder="e.g. gpt-4o" value=${draft.model} onInput=${(e) => setDraft({ ...draft, model: e.currentTarget.value })} />
      </div>
      <button type="submit">Filter</button>
    </form>
    ${pending(list) ||
    (rows.length === 0
      ? html`<p class="empty muted">${filters.status || filters.model || filters.name
          ? "No trace matches these filters."
          : html`No traces yet. Every agent turn is a trace: send a message in <a href="#/chat">Chat</a>, or send your app's spans to <code>POST /v1/traces</code> or OTLP.`}</p>`
      : html`<${Table}
            caption="Traces"
            rows=${rows}
            rowKey=${(t) => t.trace_id}
            rowHref=${(t) => `#/traces/${encodeURIComponent(t.trace_id)}`}
            columns=${[
              { label: "Name", render: (t) => t.name || html`<code>${fmt.short(t.trace_id)}</code>` },
              { label: "Status", render: (t) => html`<${Status} value=${t.run_status} />` },
              { label: "Started", render: (t) => fmt.time(t.start_time) },
              { label: "Duration", render: (t) => fmt.ms(t.duration_ms) },
              { label: "Steps", render: (t) => t.step_count },
              { label: "Tokens", render: (t) => fmt.tokens(traceTokens(t)) },
              { label: "Cost", render: (t) => fmt.cost(t.total_cost) },
              { label: "Models", render: (t) => (t.models_used || []).join(", ") },
            ]}
          />`)}
    ${list.data
      ? html`<nav class="pager" aria-label="Pages">
          <button type="button" disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>Newer</button>
          <span class="muted">${needle ? `${rows.length} of this page’s ${all.length} match the name; ` : ""}${list.data.total} in all</span>
          <button type="button" disabled=${!next} onClick=${() => setCursors([...cursors, next])}>Older</button>
        </nav>`
      : null}
  <//>`;
}
