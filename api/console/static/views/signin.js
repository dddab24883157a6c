// Sign in (password, or a configured OAuth provider) or open an account where registration is open.
import { html, useState } from "../html.js";
import { api, url } from "../api.js";
import { ErrorNote, Field } from "../ui.js";

const PROVIDERS = { google: "Google", github: "GitHub", oidc: "single sign-on" };

export default function SignIn({ config, onSignedIn }) {
  const [mode, setMode] = useState("signin");
  const [form, setForm] = useState({ email: "", password: "", name: "" });
  const [state, setState] = useState({ busy: false, error: null });
  const set = (key) => (event) => setForm({ ...form, [key]: event.target.value });
  const registering = mode === "register";

  const submit = async (event) => {
    event.preventDefault();
    setState({ busy: true, error: null });
    try {
      if (registering) await api.post("api/auth/register", form);
      else await api.post("api/auth/login", { email: form.email, password: form.password });
      await onSignedIn();
    } catch (error) {
      setState({ busy: false, error });
    }
  };

  return html`<main id="main" class="signin">
    <form class="card" onSubmit=${submit} aria-labelledby="page-title">
      <h1 id="page-title"><img src="console/icon.svg" alt="" width="28" height="28" /> Everloop</h1>
      <p class="muted">${registering ? "Open an account" : "Sign in to the console"}</p>
      ${config.password_auth_enabled
        ? html`
            ${registering
              ? html`<${Field} label="Name" id="signin-name" hint="Optional">
                  <input id="signin-name" autocomplete="name" value=${form.name} onInput=${set("name")} />
                <//>`
              : null}
            <${Field} label="Email" id="signin-email">
              <input id="signin-email" type="email" autocomplete="username" required value=${form.email}
                onInput=${set("email")} />
            <//>
            <${Field} label="Password" id="signin-password" hint=${registering ? "8 characters or more" : null}>
              <input id="signin-password" type="password" required minlength=${registering ? 8 : undefined}
                autocomplete=${registering ? "new-password" : "current-password"} value=${form.password}
                onInput=${set("password")} />
            <//>
            <${ErrorNote} error=${state.error} />
            <button type="submit" class="primary" disabled=${state.busy}>
              ${registering ? "Create account" : "Sign in"}
            </button>
          `
        : null}
      ${(config.oauth_providers || []).length
        ? html`<div class="oauth" role="group" aria-label="Other ways to sign in">
            ${config.oauth_providers.map(
              (p) => html`<a class="button" href=${url(`api/auth/oauth/${p}`)}>Continue with ${PROVIDERS[p] || p}</a>`,
            )}
          </div>`
        : null}
      ${config.signup_enabled
        ? html`<p>
            <button type="button" class="link" onClick=${() => setMode(registering ? "signin" : "register")}>
              ${registering ? "I have an account: sign in" : "No account? Create one"}
            </button>
          </p>`
        : null}
    </form>
  </main>`;
}
