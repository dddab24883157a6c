// Every session of every agent of the user (the flat `GET v1/sessions`), newest first, with its
// status and usage; filtered by agent or by title, paged.
import { html, useState } from "../html.js";
import { Page, Table, Status, useApi, pending, fmt } from "../ui.js";
import { useAgents, agentName, Select, Pager } from "./ops_util.js";

const LIMIT = 25;

export default function Sessions() {
  const agents = useAgents();
  const [agent, setAgent] = useState("");
  const [search, setSearch] = useState("");
  const [typed, setTyped] = useState("");
  const [offset, setOffset] = useState(0);
  const list = useApi("v1/sessions", { agent_id: agent, search, offset, limit: LIMIT });
  const rows = (list.data && list.data.data) || [];
  const total = (list.data && list.data.total) || 0;
  // Opswald's list beside it counts each session's turns (its traces).
  const turns = Object.fromEntries(((list.data && list.data.sessions) || []).map((s) => [s.session_id, s.trace_count]));

  const columns = [
    { label: "Session", render: (s) => s.title || html`<span class="muted">Untitled</span> <code>${fmt.short(s.id)}</code>` },
    { label: "Agent", render: (s) => agentName(agents.byId[s.agent_id]) || html`<code>${fmt.short(s.agent_id)}</code>` },
    { label: "Status", render: (s) => html`<${Status} value=${s.ended_at ? "ended" : s.status} />` },
    { label: "Turns", render: (s) => (turns[s.id] ?? "") },
    { label: "Tokens", render: (s) => fmt.tokens(s.usage?.total_tokens || 0) },
    { label: "Cost", render: (s) => fmt.cost(s.usage?.cost || 0) },
    { label: "Last active", render: (s) => fmt.time(s.finished_at || s.updated_at) },
  ];
  const agentOptions = [{ value: "", label: "All agents" }, ...agents.list.map((a) => ({ value: a.id, label: agentName(a) }))];

  return html`<${Page} title="Sessions" wide>
    <form class="inline filters" role="search" aria-label="Filter sessions"
      onSubmit=${(e) => { e.preventDefault(); setOffset(0); setSearch(typed.trim()); }}>
      <${Select} id="sessions-agent" label="Agent" value=${agent} options=${agentOptions}
        onChange=${(v) => { setOffset(0); setAgent(v); }} />
      <div class="field">
        <label for="sessions-search">Title contains</label>
        <input id="sessions-search" type="search" value=${typed} onInput=${(e) => setTyped(e.currentTarget.value)} />
      </div>
      <button type="submit">Filter</button>
    </form>
    ${pending(list) ||
    (rows.length === 0
      ? html`<p class="empty muted">${agent || search
          ? "No session matches these filters."
          : html`No sessions yet. Open <a href="#/chat">Chat</a>, pick an agent and send a message: its session shows up here.`}</p>`
      : html`<${Table} caption="Sessions" columns=${columns} rows=${rows}
            rowHref=${(s) => `#/sessions/${s.agent_id}/${s.id}`} />
          <${Pager} offset=${offset} total=${total} limit=${LIMIT} onPage=${setOffset} />`)}
  <//>`;
}
