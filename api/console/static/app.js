// The console's shell: who is signed in, the navigation, and the view of the current hash route.
import { html, render, useState, useEffect } from "./html.js";
import { api, onSignedOut } from "./api.js";
import { Account } from "./account.js";
import { warmMarkdown } from "./ui.js";
import { match, NAV } from "./routes.js";

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function Nav({ current, open, onNavigate }) {
  return html`<nav id="nav" class=${open ? "nav open" : "nav"} aria-label="Console">
    ${NAV.map(
      (group) => html`<div class="nav-group">
        <h2>${group.group}</h2>
        <ul>
          ${group.items.map(
            (item) => html`<li>
              <a href=${item.href} aria-current=${item.id === current ? "page" : undefined} onClick=${onNavigate}
                >${item.label}</a
              >
            </li>`,
          )}
        </ul>
      </div>`,
    )}
  </nav>`;
}

function View({ found }) {
  // The loaded component is kept with its route: after a route change the previous view must not
  // render once more with the new route's params (it would ask the API for the wrong thing).
  const [state, setState] = useState({ route: null, component: null, error: null });
  useEffect(() => {
    let live = true;
    found.route
      .load()
      .then((module) => live && setState({ route: found.route, component: module.default, error: null }))
      .catch((error) => live && setState({ route: found.route, component: null, error }));
    return () => {
      live = false;
    };
  }, [found.route]);
  if (state.route !== found.route) return html`<p class="muted" role="status">Loading…</p>`;
  if (state.error) return html`<p class="error" role="alert">This view did not load: ${String(state.error)}</p>`;
  const Component = state.component;
  return html`<${Component} params=${found.params} key=${found.path} />`;
}

function Shell({ account }) {
  const hash = useHash();
  const [menu, setMenu] = useState(false);
  const found = match(hash);
  useEffect(() => {
    if (!menu) return undefined;
    // The open menu closes on Escape, and focus goes back to its button.
    const close = (event) => {
      if (event.key !== "Escape") return;
      setMenu(false);
      document.querySelector(".menu")?.focus();
    };
    document.addEventListener("keydown", close);
    return () => document.removeEventListener("keydown", close);
  }, [menu]);
  // The skip link moves focus itself: its href would change the hash, which is the router's.
  const skip = (event) => {
    event.preventDefault();
    const main = document.getElementById("main");
    main.setAttribute("tabindex", "-1");
    main.focus();
  };
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${skip}>Skip to content</a>
    <header class="topbar">
      <button class="menu" aria-controls="nav" aria-expanded=${menu} onClick=${() => setMenu(!menu)}>
        <span aria-hidden="true">☰</span><span class="sr-only">Menu</span>
      </button>
      <a class="brand" href="#/chat"><img src="console/icon.svg" alt="" width="22" height="22" /> Everloop</a>
      <span class="who">
        <span class="who-name">${account.me.email || account.me.name}</span>
        ${account.config.mode !== "none"
          ? html`<button class="link" onClick=${account.signOut}>Sign out</button>`
          : null}
      </span>
    </header>
    <${Nav} current=${found && found.route.nav} open=${menu} onNavigate=${() => setMenu(false)} />
    <main id="main">
      ${found ? html`<${View} found=${found} />` : html`<p class="error" role="alert">No such page: ${hash}</p>`}
    </main>
    <div id="announce" class="sr-only" role="status" aria-live="polite"></div>
  </div>`;
}

function App() {
  const [state, setState] = useState({ loading: true, me: null, config: null, error: null });
  const load = async () => {
    // Both at once: the page waits for one round trip, not two.
    const [config, me] = await Promise.allSettled([api.get("api/auth/config"), api.get("api/auth/me")]);
    if (config.status === "rejected") return setState({ loading: false, me: null, config: null, error: config.reason });
    if (me.status === "rejected" && me.reason.status !== 401) {
      return setState({ loading: false, me: null, config: null, error: me.reason });
    }
    setState({ loading: false, me: me.status === "fulfilled" ? me.value : null, config: config.value, error: null });
  };
  useEffect(() => {
    load();
    return onSignedOut(() => setState((s) => ({ ...s, me: null, wasSignedIn: s.wasSignedIn || Boolean(s.me) })));
  }, []);
  // Views may keep what they loaded in their modules: after a sign-in that follows another, the page
  // starts afresh (the new cookies are set), so nothing of the previous user can show.
  const signedIn = () => (state.wasSignedIn ? location.reload() : load());
  if (state.loading) return html`<p class="boot" role="status">Loading Everloop…</p>`;
  if (state.error) return html`<p class="error boot" role="alert">The server did not answer: ${state.error.message}</p>`;
  const account = {
    me: state.me,
    config: state.config,
    reloadMe: load,
    signOut: async () => {
      try {
        await api.post("api/auth/logout");
      } catch (error) {
        // Not signed out (the server did not answer): say so, rather than look signed out while the
        // cookies still work. A 401 means the sign-in was already over.
        if (error.status !== 401) return alert(`Sign-out failed: ${error.message}. Try again.`);
      }
      // A fresh page: nothing the views kept in memory outlives the sign-in.
      location.hash = "#/chat";
      location.reload();
    },
  };
  if (!state.me) return html`<${SignInLoader} config=${state.config} onSignedIn=${signedIn} />`;
  return html`<${Account.Provider} value=${account}><${Shell} account=${account} /><//>`;
}

function SignInLoader({ config, onSignedIn }) {
  const [SignIn, setSignIn] = useState(null);
  useEffect(() => {
    import("./views/signin.js").then((module) => setSignIn(() => module.default));
  }, []);
  return SignIn ? html`<${SignIn} config=${config} onSignedIn=${onSignedIn} />` : null;
}

// The first view's code starts loading now, beside the sign-in check, not after it (the browser
// keeps the module: View's own import of it then resolves at once).
const first = match(location.hash);
if (first) first.route.load().catch(() => null);
// The chat's replies are Markdown: its kit loads beside the view, not after the first reply arrives.
if (first && first.route.nav === "chat") warmMarkdown();

render(html`<${App} />`, document.getElementById("app"));
