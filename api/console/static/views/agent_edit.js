// One agent, new or existing: its name, description, system prompt and default model, and its
// capabilities, each toggled on or off with, when on, a form generated from its `config_schema`.
// Saved as the agent API stores them: `capabilities` in order, a bare id for one with its defaults,
// `{ref, config}` for one configured.
import { html, useState, useEffect } from "../html.js";
import { api, items } from "../api.js";
import { Badge, ErrorNote, Loading, Page, Status, download, navigate, notify, pending, useAction, useApi } from "../ui.js";
import { SchemaFields, hasFields, prune } from "./builder_schema_form.js";
import { exportAgent, exportName } from "./builder_files.js";

const refOf = (c) => (typeof c === "string" ? c : c.ref || c.id);

/** The agent's capabilities as [{ref, config}] (config an object, {} for the defaults). */
function enabledOf(agent) {
  return (agent.capabilities || []).map((c) => ({ ref: refOf(c), config: (typeof c === "object" && c.config) || {} }));
}

function emptyAgent() {
  return { name: "", description: "", system_prompt: "", default_model_id: null, capabilities: [] };
}

function CapabilityCard({ capability, entry, onToggle, onConfig }) {
  const on = Boolean(entry);
  const soon = capability.status !== "available";
  const id = `cap-${capability.id.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
  const tools = (capability.tool_definitions || []).map((t) => t.name);
  const configurable = hasFields(capability.config_schema);
  return html`<li class=${on ? "cap on" : "cap"}>
    <div class="cap-head">
      <input id=${id} type="checkbox" checked=${on} disabled=${soon && !on} aria-describedby=${`${id}-desc`}
        onChange=${(e) => onToggle(e.target.checked)} />
      <div class="cap-title">
        <label for=${id}>${capability.name}</label>
        <code class="muted">${capability.id}</code>
        ${capability.category ? html`<${Badge}>${capability.category}<//>` : null}
        ${soon ? html`<${Badge} kind="warn">${capability.status.replace("_", " ")}<//>` : null}
      </div>
    </div>
    <p class="cap-desc muted" id=${`${id}-desc`}>${capability.description}</p>
    ${tools.length ? html`<p class="cap-tools"><span class="sr-only">Tools: </span>${tools.map((t) => html`<code class="chip">${t}</code>`)}</p>` : null}
    ${on && configurable
      ? html`<details class="cap-config" open>
          <summary>Configuration</summary>
          <div role="group" aria-label=${`${capability.name} configuration`}>
            <${SchemaFields} idPrefix=${`${id}-cfg`} schema=${capability.config_schema} value=${entry.config}
              onChange=${onConfig} />
          </div>
        </details>`
      : null}
  </li>`;
}

export default function AgentEdit({ params }) {
  const id = params[0];
  const isNew = id === "new";
  const loaded = useApi(isNew ? null : `v1/agents/${id}`);
  const catalogue = useApi("v1/capabilities", { limit: 200 });
  const models = useApi("v1/llm-models");
  const [draft, setDraft] = useState(isNew ? emptyAgent() : null);
  const [enabled, setEnabled] = useState([]);
  const [filter, setFilter] = useState("");

  useEffect(() => {
    if (loaded.data) {
      setDraft({ ...emptyAgent(), ...loaded.data, description: loaded.data.description || "" });
      setEnabled(enabledOf(loaded.data));
    }
  }, [loaded.data]);

  const caps = items(catalogue.data);
  const byId = Object.fromEntries(caps.map((c) => [c.id, c]));
  const chatModels = (Array.isArray(models.data) ? models.data : []).filter((m) => (m.kind || "chat") === "chat");

  const body = () => ({
    name: draft.name.trim(),
    description: draft.description.trim() || null,
    system_prompt: draft.system_prompt,
    default_model_id: draft.default_model_id || null,
    capabilities: enabled.map(({ ref, config }) => {
      const schema = byId[ref] && byId[ref].config_schema;
      const kept = schema ? prune(schema, config) : config;
      return kept && Object.keys(kept).length ? { ref, config: kept } : ref;
    }),
  });

  const save = useAction(async (event) => {
    event.preventDefault();
    if (isNew) {
      const made = await api.post("v1/agents", body());
      notify(`Created ${made.name}`);
      navigate(`#/agents/${made.id}`);
      return made;
    }
    const saved = await api.patch(`v1/agents/${id}`, body());
    loaded.reload();
    notify(`Saved ${saved.name}`);
    return saved;
  });
  const doExport = useAction(async () => {
    download(exportName(draft), await exportAgent(id), "text/markdown");
  });
  const setStatus = useAction(async (status) => {
    if (status === "archived") {
      if (!confirm(`Archive "${draft.name}"? Its sessions become read-only.`)) return;
      await api.del(`v1/agents/${id}`);
    } else {
      await api.patch(`v1/agents/${id}`, { status: "active" });
    }
    loaded.reload();
    notify(status === "archived" ? "Archived" : "Unarchived");
  });

  if (!isNew && (loaded.error || !draft)) return html`<${Page} title="Agent">${pending(loaded) || html`<${Loading} />`}<//>`;

  const toggle = (ref, on) =>
    setEnabled((list) => (on ? [...list.filter((e) => e.ref !== ref), { ref, config: {} }] : list.filter((e) => e.ref !== ref)));
  const configure = (ref, config) => setEnabled((list) => list.map((e) => (e.ref === ref ? { ref, config } : e)));
  const set = (field) => (e) => setDraft({ ...draft, [field]: e.target.value });
  const shown = caps.filter(
    (c) => !filter || `${c.name} ${c.id} ${c.description}`.toLowerCase().includes(filter.toLowerCase()),
  );
  // Enabled capabilities the catalogue does not show (an MCP server no longer visible) stay as they are.
  const unknown = enabled.filter((e) => !byId[e.ref]);
  const title = isNew ? "New agent" : draft.display_name || draft.name || "Agent";

  return html`<${Page}
    title=${title}
    actions=${isNew
      ? null
      : html`
          ${draft.status ? html`<${Status} value=${draft.status} />` : null}
          <a class="button" href=${`#/chat/${id}`}>Chat</a>
          <button onClick=${doExport.run} disabled=${doExport.busy}>Export</button>
          ${draft.status === "archived"
            ? html`<button onClick=${() => setStatus.run("active")}>Unarchive</button>`
            : html`<button class="danger" onClick=${() => setStatus.run("archived")}>Archive</button>`}
        `}
  >
    <p><a href="#/agents">← All agents</a></p>
    <form class="agent-form" onSubmit=${save.run} aria-label="Agent">
      <div class="builder-grid">
        <div class="builder-side">
        <section class="card" aria-labelledby="basics-h">
          <h2 id="basics-h">Basics</h2>
          <div class="field">
            <label for="agent-name">Name</label>
            <input id="agent-name" required maxlength="2048" value=${draft.name} onInput=${set("name")} />
          </div>
          <div class="field">
            <label for="agent-description">Description</label>
            <input id="agent-description" value=${draft.description} onInput=${set("description")} />
          </div>
          <div class="field">
            <label for="agent-model">Default model</label>
            <select id="agent-model" aria-describedby="agent-model-hint" value=${draft.default_model_id || ""}
              onChange=${(e) => setDraft({ ...draft, default_model_id: e.target.value || null })}>
              <option value="">The server's default model</option>
              ${chatModels.map(
                (m) => html`<option value=${m.id}>
                  ${m.display_name || m.model_id} · ${m.provider_name}${m.is_default ? " (default)" : ""}
                </option>`,
              )}
            </select>
            <small class="muted" id="agent-model-hint">
              ${models.error ? `Models did not load: ${models.error.message}` : "Sessions start with this model; a message may pick another."}
            </small>
          </div>
          <div class="field">
            <label for="agent-prompt">System prompt</label>
            <textarea id="agent-prompt" class="prompt" rows="12" maxlength="1048576" value=${draft.system_prompt}
              onInput=${set("system_prompt")}></textarea>
          </div>
        </section>
        <div class="save-bar">
          <${ErrorNote} error=${save.error || doExport.error || setStatus.error} />
          ${save.busy ? html`<span class="muted" role="status">Saving…</span>` : null}
          <button type="submit" class="primary" disabled=${save.busy}>${isNew ? "Create agent" : "Save"}</button>
        </div>
        </div>
        <section class="card" aria-labelledby="caps-h">
          <div class="caps-head">
            <h2 id="caps-h">Capabilities <span class="muted count">${enabled.length} on</span></h2>
            <div class="field">
              <label class="sr-only" for="cap-filter">Filter capabilities</label>
              <input id="cap-filter" type="search" placeholder="Filter capabilities" value=${filter}
                onInput=${(e) => setFilter(e.target.value)} />
            </div>
          </div>
          ${pending(catalogue) ||
          html`<ul class="caps">
            ${shown.map(
              (c) => html`<${CapabilityCard}
                key=${c.id}
                capability=${c}
                entry=${enabled.find((e) => e.ref === c.id)}
                onToggle=${(on) => toggle(c.id, on)}
                onConfig=${(config) => configure(c.id, config)}
              />`,
            )}
          </ul>`}
          ${unknown.length
            ? html`<p class="muted">Also enabled, not in the list: ${unknown.map((e) => html`<code class="chip">${e.ref}</code>`)}</p>`
            : null}
        </section>
      </div>
    </form>
  <//>`;
}
