// LLM providers and their models. A provider's API key is write-only: the API never returns it
// (only `api_key_set`), so the form never shows one; a key is sent only when one is typed.
// Shared providers (an admin's, `shared` in the API's answer) are changed only by admins: to anyone
// else they show read-only.
import { html, useState } from "../html.js";
import { api } from "../api.js";
import { useAccount } from "../account.js";
import { Badge, Empty, ErrorNote, Page, Status, Table, notify, pending, useAction, useApi } from "../ui.js";

const TYPES = ["openai", "anthropic", "azure_openai", "openai_compatible", "simulator", "llmsim"];
const KEYLESS = new Set(["simulator", "llmsim", "openai_compatible"]);

function KeyState({ provider }) {
  if (provider.api_key_set) return html`<${Badge} kind="good">key set<//>`;
  if (KEYLESS.has(provider.provider_type)) return html`<${Badge}>no key needed<//>`;
  return html`<${Badge} kind="warn">no key<//>`;
}

/** What litellm's table knows of a model, in a few words: context size and price per million tokens. */
function profileOf(model) {
  const p = model.profile;
  if (!p) return "";
  const bits = [];
  if (p.limits && p.limits.context) bits.push(`${Math.round(p.limits.context / 1000)}k context`);
  if (p.cost) bits.push(`$${p.cost.input} / $${p.cost.output} per M tokens`);
  return bits.join(" · ");
}

function ProviderForm({ provider, onDone, onCancel }) {
  const editing = Boolean(provider);
  const [name, setName] = useState(provider ? provider.name : "");
  const [type, setType] = useState(provider ? provider.provider_type : "openai");
  const [baseUrl, setBaseUrl] = useState(provider ? provider.base_url || "" : "");
  const [key, setKey] = useState("");
  const [clearKey, setClearKey] = useState(false);
  const [active, setActive] = useState(provider ? provider.status === "active" : true);
  const prefix = provider ? `prov-${provider.id}` : "prov-new";
  const save = useAction(async (event) => {
    event.preventDefault();
    const body = { name: name.trim(), provider_type: type, status: active ? "active" : "disabled" };
    if (!editing || baseUrl !== (provider.base_url || "")) body.base_url = baseUrl.trim() || null;
    // Only a typed key is sent; an empty field leaves the stored one as it is.
    if (key) body.api_key = key;
    else if (clearKey) body.api_key = null;
    const saved = editing
      ? await api.patch(`v1/llm-providers/${provider.id}`, body)
      : await api.post("v1/llm-providers", body);
    setKey("");
    notify(editing ? `Saved ${saved.name}` : `Added ${saved.name}`);
    onDone(saved);
  });
  return html`<form class="card provider-form" onSubmit=${save.run} aria-label=${editing ? `Edit ${provider.name}` : "New provider"}>
    <h3>${editing ? `Edit ${provider.name}` : "New provider"}</h3>
    <div class="form-grid">
      <div class="field">
        <label for=${`${prefix}-name`}>Provider name</label>
        <input id=${`${prefix}-name`} required maxlength="200" value=${name} onInput=${(e) => setName(e.target.value)} />
      </div>
      <div class="field">
        <label for=${`${prefix}-type`}>Type</label>
        <select id=${`${prefix}-type`} value=${type} onChange=${(e) => setType(e.target.value)}>
          ${TYPES.map((t) => html`<option value=${t}>${t}</option>`)}
        </select>
      </div>
      <div class="field">
        <label for=${`${prefix}-url`}>Base URL</label>
        <input id=${`${prefix}-url`} type="url" placeholder="The type's default endpoint" value=${baseUrl}
          aria-describedby=${`${prefix}-url-hint`} onInput=${(e) => setBaseUrl(e.target.value)} />
        <small class="muted" id=${`${prefix}-url-hint`}>Optional: a gateway, vLLM, Ollama… Changing it needs the key again.</small>
      </div>
      <div class="field">
        <label for=${`${prefix}-key`}>API key</label>
        <input id=${`${prefix}-key`} type="password" autocomplete="off" spellcheck=${false}
          placeholder=${provider && provider.api_key_set ? "Set: type to replace it" : KEYLESS.has(type) ? "Not needed for this type" : "Not set"}
          aria-describedby=${`${prefix}-key-hint`} value=${key} onInput=${(e) => setKey(e.target.value)} />
        <small class="muted" id=${`${prefix}-key-hint`}>
          Write-only: stored encrypted and never shown again${provider ? `; now ${provider.api_key_set ? "set" : "not set"}` : ""}.
        </small>
      </div>
    </div>
    <div class="actions">
      <span class="check">
        <input id=${`${prefix}-active`} type="checkbox" checked=${active} onChange=${(e) => setActive(e.target.checked)} />
        <label for=${`${prefix}-active`}>Active</label>
      </span>
      ${provider && provider.api_key_set
        ? html`<span class="check">
            <input id=${`${prefix}-clear`} type="checkbox" checked=${clearKey} disabled=${Boolean(key)}
              onChange=${(e) => setClearKey(e.target.checked)} />
            <label for=${`${prefix}-clear`}>Remove the stored key</label>
          </span>`
        : null}
    </div>
    <${ErrorNote} error=${save.error} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${save.busy}>${editing ? "Save provider" : "Add provider"}</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

function ModelForm({ provider, model, onDone, onCancel }) {
  const editing = Boolean(model);
  const [modelId, setModelId] = useState(model ? model.model_id : "");
  const [display, setDisplay] = useState(model ? model.display_name : "");
  const [kind, setKind] = useState(model ? model.kind || "chat" : "chat");
  const [isDefault, setIsDefault] = useState(model ? model.is_default : false);
  const prefix = model ? `model-${model.id}` : `model-new-${provider.id}`;
  const save = useAction(async (event) => {
    event.preventDefault();
    const body = { model_id: modelId.trim(), kind };
    if (display.trim()) body.display_name = display.trim();
    if (!editing || isDefault !== model.is_default) body.is_default = isDefault;
    const saved = editing
      ? await api.patch(`v1/llm-models/${model.id}`, body)
      : await api.post(`v1/llm-providers/${provider.id}/models`, body);
    notify(editing ? `Saved ${saved.model_id}` : `Added ${saved.model_id}`);
    onDone(saved);
  });
  return html`<form class="inline model-form" onSubmit=${save.run} aria-label=${editing ? `Edit model ${model.model_id}` : `New model of ${provider.name}`}>
    <div class="field">
      <label for=${`${prefix}-id`}>Model id</label>
      <input id=${`${prefix}-id`} required maxlength="200" placeholder="gpt-4o-mini" value=${modelId}
        onInput=${(e) => setModelId(e.target.value)} />
    </div>
    <div class="field">
      <label for=${`${prefix}-display`}>Display name</label>
      <input id=${`${prefix}-display`} maxlength="200" value=${display} onInput=${(e) => setDisplay(e.target.value)} />
    </div>
    <div class="field narrow">
      <label for=${`${prefix}-kind`}>Kind</label>
      <select id=${`${prefix}-kind`} value=${kind} onChange=${(e) => setKind(e.target.value)}>
        <option value="chat">chat</option>
        <option value="embedding">embedding</option>
      </select>
    </div>
    <span class="check">
      <input id=${`${prefix}-default`} type="checkbox" checked=${isDefault}
        onChange=${(e) => setIsDefault(e.target.checked)} />
      <label for=${`${prefix}-default`}>Default model</label>
    </span>
    <button type="submit" class="primary" disabled=${save.busy}>${editing ? "Save model" : "Add model"}</button>
    <button type="button" onClick=${onCancel}>Cancel</button>
    <${ErrorNote} error=${save.error} />
  </form>`;
}

function ProviderCard({ provider, models, isAdmin, reload }) {
  const [editing, setEditing] = useState(false);
  const [modelForm, setModelForm] = useState(null); // "new" or a model
  const remove = useAction(async () => {
    if (!confirm(`Delete the provider "${provider.name}" and its models?`)) return;
    await api.del(`v1/llm-providers/${provider.id}`);
    notify(`Deleted ${provider.name}`);
    reload();
  });
  const removeModel = useAction(async (model) => {
    if (!confirm(`Delete the model "${model.model_id}"?`)) return;
    await api.del(`v1/llm-models/${model.id}`);
    notify(`Deleted ${model.model_id}`);
    reload();
  });
  const makeDefault = useAction(async (model) => {
    await api.patch(`v1/llm-models/${model.id}`, { is_default: true });
    notify(`${model.model_id} is now the default model`);
    reload();
  });
  const headingId = `prov-${provider.id}-h`;
  // A shared provider (an admin's) is everyone's to use and only admins' to change (`shared`).
  const canChange = !provider.shared || isAdmin;
  return html`<section class="card provider" aria-labelledby=${headingId}>
    <header class="provider-head">
      <div>
        <h2 id=${headingId}>${provider.name}</h2>
        <div class="chips">
          <code class="chip">${provider.provider_type}</code>
          <${KeyState} provider=${provider} />
          <${Status} value=${provider.status} />
          ${provider.shared ? html`<${Badge} kind="good">shared<//>` : html`<${Badge}>yours<//>`}
          ${provider.base_url ? html`<span class="muted url">${provider.base_url}</span>` : null}
        </div>
      </div>
      ${canChange
        ? html`<div class="actions">
            <button onClick=${() => setEditing(!editing)} aria-expanded=${editing} aria-label=${`Edit ${provider.name}`}>Edit</button>
            <button class="danger" onClick=${remove.run} aria-label=${`Delete ${provider.name}`}>Delete</button>
          </div>`
        : html`<span class="muted">Read-only (shared by an admin)</span>`}
    </header>
    <${ErrorNote} error=${remove.error || removeModel.error || makeDefault.error} />
    ${editing
      ? html`<${ProviderForm} provider=${provider} onCancel=${() => setEditing(false)}
          onDone=${() => {
            setEditing(false);
            reload();
          }} />`
      : null}
    <h3>Models</h3>
    ${models.length
      ? html`<${Table}
          caption=${`Models of ${provider.name}`}
          rows=${models}
          columns=${[
            { label: "Model", render: (m) => html`<code>${m.model_id}</code>` },
            { label: "Name", render: (m) => (m.display_name !== m.model_id ? m.display_name : "") },
            { label: "Kind", render: (m) => m.kind || "chat" },
            { label: "Profile", render: (m) => html`<span class="muted">${profileOf(m)}</span>` },
            {
              label: "State",
              render: (m) => html`<span class="chips">
                ${m.is_default ? html`<${Badge} kind="good">default<//>` : null}
                ${m.healthy ? html`<${Badge} kind="good">ready<//>` : html`<${Badge} kind="warn">not ready<//>`}
                ${m.enabled ? null : html`<${Badge}>disabled<//>`}
              </span>`,
            },
            canChange && {
              label: "Actions",
              render: (m) => html`<span class="row-actions">
                <button onClick=${() => setModelForm(m)} aria-label=${`Edit model ${m.model_id}`}>Edit</button>
                ${m.is_default || (m.kind || "chat") !== "chat"
                  ? null
                  : html`<button onClick=${() => makeDefault.run(m)} aria-label=${`Make ${m.model_id} the default`}>Make default</button>`}
                <button class="danger" onClick=${() => removeModel.run(m)} aria-label=${`Delete model ${m.model_id}`}>Delete</button>
              </span>`,
            },
          ].filter(Boolean)}
        />`
      : html`<${Empty}>No models yet.<//>`}
    ${!canChange
      ? null
      : modelForm
      ? html`<${ModelForm} key=${modelForm === "new" ? "new" : modelForm.id} provider=${provider}
          model=${modelForm === "new" ? null : modelForm}
          onCancel=${() => setModelForm(null)}
          onDone=${() => {
            setModelForm(null);
            reload();
          }} />`
      : html`<p><button onClick=${() => setModelForm("new")} aria-label=${`Add a model to ${provider.name}`}>Add model</button></p>`}
  </section>`;
}

export default function ProvidersView() {
  const { me } = useAccount();
  const isAdmin = me.role === "admin";
  const providers = useApi("v1/llm-providers");
  const models = useApi("v1/llm-models");
  const [adding, setAdding] = useState(false);
  const reload = () => {
    providers.reload();
    models.reload();
  };
  const list = Array.isArray(providers.data) ? providers.data : [];
  const allModels = Array.isArray(models.data) ? models.data : [];
  return html`<${Page}
    title="Providers & models"
    actions=${html`<button class="primary" onClick=${() => setAdding(!adding)} aria-expanded=${adding}>New provider</button>`}
  >
    <p class="muted">
      ${isAdmin
        ? "Providers you add are shared: everyone may use them and their models; only admins change them."
        : "Shared providers come from the admins (read-only for you); the ones you add are yours alone."}
    </p>
    ${adding
      ? html`<${ProviderForm} onCancel=${() => setAdding(false)}
          onDone=${() => {
            setAdding(false);
            reload();
          }} />`
      : null}
    ${pending(providers) ||
    (list.length
      ? html`<div class="providers">
          ${list.map(
            (p) => html`<${ProviderCard} key=${p.id} provider=${p} isAdmin=${isAdmin} reload=${reload}
              models=${allModels.filter((m) => m.provider_id === p.id)} />`,
          )}
        </div>`
      : html`<${Empty}>No providers yet: add one to give agents a model.<//>`)}
    <${ErrorNote} error=${models.error} />
  <//>`;
}
