// The agents list: search, the archived ones on demand, new, import (a file from export, YAML or
// JSON), and per agent export, archive or unarchive.
import { html, useState, useRef } from "../html.js";
import { api, items } from "../api.js";
import { Empty, ErrorNote, Page, Status, Table, download, fmt, navigate, notify, pending, readText, useAction, useApi } from "../ui.js";
import { exportAgent, exportName, importAgent } from "./builder_files.js";

function capabilityNames(agent) {
  return (agent.capabilities || []).map((c) => (typeof c === "string" ? c : c.ref || c.id));
}

export default function AgentsView() {
  const [archived, setArchived] = useState(false);
  const [search, setSearch] = useState("");
  const list = useApi("v1/agents", { include_archived: archived ? "true" : "", search, limit: 200 });
  const models = useApi("v1/llm-models");
  const file = useRef(null);

  const modelName = (id) => {
    const model = (Array.isArray(models.data) ? models.data : []).find((m) => m.id === id);
    return model ? model.display_name || model.model_id : id ? fmt.short(id) : "server default";
  };

  const doImport = useAction(async (event) => {
    const chosen = event.target.files && event.target.files[0];
    event.target.value = ""; // the same file may be chosen again
    if (!chosen) return;
    const agent = await importAgent(chosen.name, await readText(chosen));
    notify(`Imported ${agent.name}`);
    navigate(`#/agents/${agent.id}`);
  });
  const doExport = useAction(async (agent) => {
    download(exportName(agent), await exportAgent(agent.id), "text/markdown");
    notify(`Exported ${agent.name}`);
  });
  const setStatus = useAction(async (agent, status) => {
    if (status === "archived") {
      if (!confirm(`Archive "${agent.name}"? Its sessions become read-only; you can unarchive it later.`)) return;
      await api.del(`v1/agents/${agent.id}`);
    } else {
      await api.patch(`v1/agents/${agent.id}`, { status: "active" });
    }
    notify(status === "archived" ? `Archived ${agent.name}` : `Unarchived ${agent.name}`);
    list.reload();
  });

  const rows = items(list.data);
  return html`<${Page}
    title="Agents"
    actions=${html`
      <a class="button primary" href="#/agents/new">New agent</a>
      <button onClick=${() => file.current && file.current.click()} disabled=${doImport.busy}>Import…</button>
      <input
        ref=${file}
        class="sr-only"
        type="file"
        accept=".md,.markdown,.yaml,.yml,.json,text/markdown,application/json,application/yaml"
        aria-label="Import an agent file"
        tabindex="-1"
        onChange=${doImport.run}
      />
    `}
  >
    <div class="toolbar">
      <div class="field">
        <label for="agent-search">Search</label>
        <input id="agent-search" type="search" placeholder="Name or description" value=${search}
          onInput=${(e) => setSearch(e.target.value)} />
      </div>
      <div class="check">
        <input id="agent-archived" type="checkbox" checked=${archived} onChange=${(e) => setArchived(e.target.checked)} />
        <label for="agent-archived">Show archived</label>
      </div>
    </div>
    <${ErrorNote} error=${doImport.error || doExport.error || setStatus.error} />
    ${pending(list) ||
    (rows.length
      ? html`<${Table}
          caption="Agents"
          rows=${rows}
          rowHref=${(a) => `#/agents/${a.id}`}
          columns=${[
            { label: "Name", render: (a) => a.display_name || a.name },
            { label: "Description", render: (a) => html`<span class="clamp">${a.description || ""}</span>` },
            { label: "Model", render: (a) => modelName(a.default_model_id) },
            {
              label: "Capabilities",
              render: (a) => html`<span class="chips">${capabilityNames(a).map((c) => html`<code class="chip">${c}</code>`)}</span>`,
            },
            { label: "Status", render: (a) => html`<${Status} value=${a.status} />` },
            { label: "Updated", render: (a) => fmt.time(a.updated_at) },
            {
              label: "Actions",
              render: (a) => html`<span class="row-actions">
                <button onClick=${() => doExport.run(a)} aria-label=${`Export ${a.name}`}>Export</button>
                ${a.status === "archived"
                  ? html`<button onClick=${() => setStatus.run(a, "active")} aria-label=${`Unarchive ${a.name}`}>Unarchive</button>`
                  : html`<button class="danger" onClick=${() => setStatus.run(a, "archived")} aria-label=${`Archive ${a.name}`}>Archive</button>`}
              </span>`,
            },
          ]}
        />`
      : html`<${Empty}>${search ? "No agent matches." : "No agents yet. Make one, or import a file."}<//>`)}
  <//>`;
}
