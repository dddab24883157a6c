// MCP servers: each is the capability `mcp:{id}` agents enable. Headers are write-only (the API
// shows only their names): the form sends them only when typed, and then they replace all of them.
// A shared server (an admin's) is read-only for everyone else.
import { html, useState } from "../html.js";
import { api, items } from "../api.js";
import { useAccount } from "../account.js";
import { Badge, Empty, ErrorNote, Page, fmt, notify, pending, useAction, useApi } from "../ui.js";

/** "Name: value" lines as a headers object; a line without a colon is an error naming it. */
function parseHeaders(text) {
  const headers = {};
  for (const [i, line] of text.split("\n").entries()) {
    if (!line.trim()) continue;
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`Header line ${i + 1} needs the form "Name: value"`);
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

function ServerForm({ server, isAdmin, onDone, onCancel }) {
  const editing = Boolean(server);
  const [name, setName] = useState(server ? server.name : "");
  const [transport, setTransport] = useState(server ? server.transport : "streamable_http");
  const [url, setUrl] = useState(server ? server.url || "" : "");
  const [headers, setHeaders] = useState("");
  const [clearHeaders, setClearHeaders] = useState(false);
  const [command, setCommand] = useState(server ? server.command || "" : "");
  const [args, setArgs] = useState(server ? (server.args || []).join("\n") : "");
  const [prefix, setPrefix] = useState(server ? server.tool_prefix : "");
  const [timeout, setTimeoutS] = useState(server ? String(server.timeout_s) : "60");
  const id = server ? `mcp-${server.id}` : "mcp-new";
  const save = useAction(async (event) => {
    event.preventDefault();
    const body = { name: name.trim(), tool_prefix: prefix.trim(), timeout_s: Number(timeout) };
    if (!editing) body.transport = transport;
    if (transport === "streamable_http") {
      if (!editing || url !== (server.url || "")) body.url = url.trim();
      // Typed headers replace the stored ones; an empty field keeps them.
      if (headers.trim()) body.headers = parseHeaders(headers);
      else if (clearHeaders) body.headers = {};
    } else {
      body.command = command.trim();
      body.args = args.split("\n").map((a) => a.trim()).filter(Boolean);
    }
    const saved = editing ? await api.patch(`v1/mcp-servers/${server.id}`, body) : await api.post("v1/mcp-servers", body);
    setHeaders("");
    notify(editing ? `Saved ${saved.name}` : `Added ${saved.name}`);
    onDone(saved);
  });
  const names = server ? server.header_names || [] : [];
  return html`<form class="card" onSubmit=${save.run} aria-label=${editing ? `Edit ${server.name}` : "New MCP server"}>
    <h3>${editing ? `Edit ${server.name}` : "New MCP server"}</h3>
    <div class="form-grid">
      <div class="field">
        <label for=${`${id}-name`}>Server name</label>
        <input id=${`${id}-name`} required maxlength="200" value=${name} onInput=${(e) => setName(e.target.value)} />
      </div>
      <div class="field">
        <label for=${`${id}-transport`}>Transport</label>
        <select id=${`${id}-transport`} value=${transport} disabled=${editing} aria-describedby=${`${id}-transport-hint`}
          onChange=${(e) => setTransport(e.target.value)}>
          <option value="streamable_http">Streamable HTTP</option>
          <option value="stdio" disabled=${!isAdmin}>stdio (admins only)</option>
        </select>
        <small class="muted" id=${`${id}-transport-hint`}>${editing ? "Fixed once added." : "stdio runs a command on this server."}</small>
      </div>
      ${transport === "streamable_http"
        ? html`
            <div class="field">
              <label for=${`${id}-url`}>URL</label>
              <input id=${`${id}-url`} type="url" required placeholder="https://mcp.example.com/mcp" value=${url}
                onInput=${(e) => setUrl(e.target.value)} />
            </div>
            <div class="field">
              <label for=${`${id}-headers`}>Headers</label>
              <textarea id=${`${id}-headers`} rows="2" spellcheck=${false} autocomplete="off" class="code"
                placeholder=${names.length ? "Set: type to replace all of them" : "Authorization: Bearer …"}
                aria-describedby=${`${id}-headers-hint`} value=${headers} onInput=${(e) => setHeaders(e.target.value)}></textarea>
              <small class="muted" id=${`${id}-headers-hint`}>
                One "Name: value" per line. Write-only: values are never shown again${names.length ? `; set now: ${names.join(", ")}` : ""}.
              </small>
            </div>
          `
        : html`
            <div class="field">
              <label for=${`${id}-command`}>Command</label>
              <input id=${`${id}-command`} required value=${command} onInput=${(e) => setCommand(e.target.value)} />
            </div>
            <div class="field">
              <label for=${`${id}-args`}>Arguments</label>
              <textarea id=${`${id}-args`} rows="2" aria-describedby=${`${id}-args-hint`} value=${args}
                onInput=${(e) => setArgs(e.target.value)}></textarea>
              <small class="muted" id=${`${id}-args-hint`}>One per line.</small>
            </div>
          `}
      <div class="field">
        <label for=${`${id}-prefix`}>Tool prefix</label>
        <input id=${`${id}-prefix`} maxlength="32" pattern="[A-Za-z0-9_\\-]*" placeholder="docs_" value=${prefix}
          aria-describedby=${`${id}-prefix-hint`} onInput=${(e) => setPrefix(e.target.value)} />
        <small class="muted" id=${`${id}-prefix-hint`}>Put before each tool name the model sees.</small>
      </div>
      <div class="field">
        <label for=${`${id}-timeout`}>Timeout (seconds)</label>
        <input id=${`${id}-timeout`} type="number" min="1" max="60" step="any" required value=${timeout}
          onInput=${(e) => setTimeoutS(e.target.value)} />
      </div>
    </div>
    ${names.length && transport === "streamable_http"
      ? html`<span class="check">
          <input id=${`${id}-clear`} type="checkbox" checked=${clearHeaders} disabled=${Boolean(headers.trim())}
            onChange=${(e) => setClearHeaders(e.target.checked)} />
          <label for=${`${id}-clear`}>Remove the stored headers</label>
        </span>`
      : null}
    <${ErrorNote} error=${save.error} />
    <div class="actions">
      <button type="submit" class="primary" disabled=${save.busy}>${editing ? "Save server" : "Add server"}</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
  </form>`;
}

function ServerCard({ server, isAdmin, reload }) {
  const [editing, setEditing] = useState(false);
  const canChange = !server.shared || isAdmin;
  const remove = useAction(async () => {
    if (!confirm(`Delete the MCP server "${server.name}"?`)) return;
    await api.del(`v1/mcp-servers/${server.id}`);
    notify(`Deleted ${server.name}`);
    reload();
  });
  const refresh = useAction(async () => {
    await api.post(`v1/mcp-servers/${server.id}/refresh`);
    notify(`Refreshed the tools of ${server.name}`);
    reload();
  });
  const headingId = `mcp-${server.id}-h`;
  return html`<section class="card" aria-labelledby=${headingId}>
    <header class="provider-head">
      <div>
        <h2 id=${headingId}>${server.name}</h2>
        <div class="chips">
          <code class="chip">${server.capability_id}</code>
          <${Badge}>${server.transport}<//>
          ${server.shared ? html`<${Badge} kind="good">shared<//>` : html`<${Badge}>yours<//>`}
          ${(server.header_names || []).length ? html`<${Badge}>headers set: ${server.header_names.join(", ")}<//>` : null}
          ${server.url ? html`<span class="muted url">${server.url}</span>` : null}
          ${server.command ? html`<code class="muted url">${[server.command, ...(server.args || [])].join(" ")}</code>` : null}
        </div>
      </div>
      <div class="actions">
        ${canChange
          ? html`
              <button onClick=${refresh.run} disabled=${refresh.busy} aria-label=${`Refresh the tools of ${server.name}`}>
                ${refresh.busy ? "Refreshing…" : "Refresh tools"}
              </button>
              <button onClick=${() => setEditing(!editing)} aria-expanded=${editing} aria-label=${`Edit ${server.name}`}>Edit</button>
              <button class="danger" onClick=${remove.run} aria-label=${`Delete ${server.name}`}>Delete</button>
            `
          : html`<span class="muted">Read-only (shared by an admin)</span>`}
      </div>
    </header>
    <${ErrorNote} error=${remove.error || refresh.error} />
    ${server.tools_error ? html`<p class="error">The last tool listing failed: ${server.tools_error}</p>` : null}
    ${editing
      ? html`<${ServerForm} server=${server} isAdmin=${isAdmin} onCancel=${() => setEditing(false)}
          onDone=${() => {
            setEditing(false);
            reload();
          }} />`
      : null}
    <details>
      <summary>${server.tools.length} tool${server.tools.length === 1 ? "" : "s"}${server.tools_refreshed_at ? `, listed ${fmt.time(server.tools_refreshed_at)}` : ""}</summary>
      <ul class="tool-list">
        ${server.tools.map((t) => html`<li><code>${t.name}</code> <span class="muted">${t.description}</span></li>`)}
      </ul>
    </details>
  </section>`;
}

export default function McpView() {
  const { me } = useAccount();
  const isAdmin = me.role === "admin";
  const servers = useApi("v1/mcp-servers", { limit: 200 });
  const [adding, setAdding] = useState(false);
  const list = items(servers.data);
  return html`<${Page}
    title="MCP servers"
    actions=${html`<button class="primary" onClick=${() => setAdding(!adding)} aria-expanded=${adding}>New server</button>`}
  >
    <p class="muted">Each server's tools become a capability (<code>mcp:…</code>) that agents enable in the builder.</p>
    ${adding
      ? html`<${ServerForm} isAdmin=${isAdmin} onCancel=${() => setAdding(false)}
          onDone=${() => {
            setAdding(false);
            servers.reload();
          }} />`
      : null}
    ${pending(servers) ||
    (list.length
      ? html`<div class="providers">${list.map((s) => html`<${ServerCard} key=${s.id} server=${s} isAdmin=${isAdmin} reload=${servers.reload} />`)}</div>`
      : html`<${Empty}>No MCP servers yet.<//>`)}
  <//>`;
}
