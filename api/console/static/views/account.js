// The signed-in user and their API keys (a key is shown once, when it is made; revoked here).
import { html, useState } from "../html.js";
import { api, items } from "../api.js";
import { useAccount } from "../account.js";
import { ErrorNote, Field, Page, Table, fmt, pending, useAction, useApi, Empty } from "../ui.js";

export default function AccountView() {
  const { me, config, signOut } = useAccount();
  const keys = useApi(config.mode === "none" ? null : "api/auth/api-keys");
  const [name, setName] = useState("");
  const [days, setDays] = useState("");
  const [made, setMade] = useState(null);
  const create = useAction(async (event) => {
    event.preventDefault();
    const body = { name };
    if (days) body.expires_in_days = Number(days);
    const key = await api.post("api/auth/api-keys", body);
    setMade(key);
    setName("");
    setDays("");
    keys.reload();
    return key;
  });
  const revoke = useAction(async (key) => {
    if (!confirm(`Revoke the key "${key.name}"? Clients using it stop working at once.`)) return;
    await api.del(`api/auth/api-keys/${key.id}`);
    keys.reload();
  });

  return html`<${Page} title="Account">
    <dl class="facts">
      <dt>Email</dt><dd>${me.email}</dd>
      <dt>Name</dt><dd>${me.name}</dd>
      <dt>Role</dt><dd>${me.role}</dd>
      <dt>Sign-in mode</dt><dd>${config.mode}</dd>
    </dl>
    ${config.mode === "none"
      ? html`<p class="muted">AUTH_MODE=none: this console and the API need no sign-in on this machine.</p>`
      : html`
          <h2>API keys</h2>
          ${made
            ? html`<div class="callout" role="status">
                <p><strong>Your new key "${made.name}".</strong> Copy it now: it is not shown again.</p>
                <p><code class="secret" data-testid="new-key">${made.key}</code></p>
                <button onClick=${() => navigator.clipboard?.writeText(made.key)}>Copy</button>
                <button class="link" onClick=${() => setMade(null)}>Done</button>
              </div>`
            : null}
          <form class="inline" onSubmit=${create.run} aria-label="New API key">
            <${Field} label="Key name" id="key-name">
              <input id="key-name" required maxlength="200" value=${name} onInput=${(e) => setName(e.target.value)} />
            <//>
            <${Field} label="Expires in (days)" id="key-days" hint="Empty: never">
              <input id="key-days" type="number" min="1" value=${days} onInput=${(e) => setDays(e.target.value)} />
            <//>
            <button type="submit" class="primary" disabled=${create.busy}>Create key</button>
          </form>
          <${ErrorNote} error=${create.error || revoke.error} />
          ${pending(keys) ||
          (items(keys.data).length
            ? html`<${Table}
                caption="API keys"
                rows=${items(keys.data)}
                columns=${[
                  { label: "Name", render: (k) => k.name },
                  { label: "Key", render: (k) => html`<code>${k.key_prefix || k.prefix}</code>` },
                  { label: "Created", render: (k) => fmt.time(k.created_at) },
                  { label: "Last used", render: (k) => fmt.time(k.last_used_at) || "never" },
                  { label: "Expires", render: (k) => fmt.time(k.expires_at) || "never" },
                  {
                    label: "",
                    render: (k) =>
                      html`<button class="danger" onClick=${() => revoke.run(k)} aria-label=${`Revoke ${k.name}`}>
                        Revoke
                      </button>`,
                  },
                ]}
              />`
            : html`<${Empty}>No API keys yet.<//>`)}
          <p><button onClick=${signOut}>Sign out</button></p>
        `}
  <//>`;
}
