// Shared pieces of every view: data loading, page frame, errors, tables, formatting, Markdown.
import { html, useState, useEffect, useRef, useCallback } from "./html.js";
import { api } from "./api.js";

/** Loads `path` (with `query`) when the component mounts or `deps` change: {data, error, loading, reload}. */
export function useApi(path, query, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const load = useCallback(async () => {
    const mine = ++generation.current;
    if (!path) return setState({ data: null, error: null, loading: false });
    setState((s) => ({ ...s, loading: true }));
    try {
      const data = await api.get(path, query);
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState({ data: null, error, loading: false });
    }
  }, [path, JSON.stringify(query || {}), ...deps]);
  useEffect(() => {
    load();
  }, [load]);
  // `reload` always fetches what the component asks for now, even when called from an action that
  // began under an earlier query (a stale closure would fetch the old one, and its answer would win).
  const latest = useRef(load);
  latest.current = load;
  const reload = useCallback(() => latest.current(), []);
  return { ...state, reload };
}

/** Runs an action (a POST...), exposing `busy` and `error`; returns the action's answer or undefined. */
export function useAction(action) {
  const [state, setState] = useState({ busy: false, error: null });
  const run = async (...args) => {
    setState({ busy: true, error: null });
    try {
      const answer = await action(...args);
      setState({ busy: false, error: null });
      return answer;
    } catch (error) {
      setState({ busy: false, error });
      return undefined;
    }
  };
  return { ...state, run, clear: () => setState({ busy: false, error: null }) };
}

export function navigate(hash) {
  location.hash = hash.startsWith("#") ? hash : `#${hash}`;
}

/** A view's frame: its heading (focused on arrival, for screen readers), actions, and content. */
export function Page({ title, actions, children, wide }) {
  const heading = useRef(null);
  useEffect(() => {
    document.title = `${title} · Everloop`;
  }, [title]);
  useEffect(() => {
    // A new view starts keyboard and screen-reader users at its heading, unless they are already
    // somewhere in the page (typing, or on a control the view kept).
    const active = document.activeElement;
    if (!active || active === document.body || active.closest("nav")) heading.current?.focus({ preventScroll: true });
  }, []);
  return html`<section class=${wide ? "page wide" : "page"} aria-labelledby="page-title">
    <header class="page-head">
      <h1 id="page-title" ref=${heading} tabindex="-1">${title}</h1>
      ${actions ? html`<div class="actions">${actions}</div>` : null}
    </header>
    ${children}
  </section>`;
}

export function ErrorNote({ error }) {
  if (!error) return null;
  const detail = error.field ? ` (${error.field})` : "";
  return html`<p class="error" role="alert">${error.message || String(error)}${detail}</p>`;
}

export function Loading({ label = "Loading…" }) {
  return html`<p class="muted" role="status">${label}</p>`;
}

export function Empty({ children }) {
  return html`<p class="empty muted">${children}</p>`;
}

/** What a `useApi` state shows while it is not ready; null once `data` is there. */
export function pending(state) {
  if (state.error) return html`<${ErrorNote} error=${state.error} />`;
  if (state.loading && !state.data) return html`<${Loading} />`;
  return null;
}

export function Badge({ kind, children }) {
  return html`<span class=${`badge ${kind || ""}`}>${children}</span>`;
}

/** A status word as a coloured badge (ok/completed/active green, failed/error red, ...). */
export function Status({ value }) {
  const v = String(value || "unknown").toLowerCase();
  const kind = /(fail|error|cancel|terminat|timed)/.test(v)
    ? "bad"
    : /(ok|complete|success|pass|active|idle|ready|running|started)/.test(v)
      ? "good"
      : "neutral";
  return html`<${Badge} kind=${kind}>${value}<//>`;
}

/** A labelled form control: `<${Field} label="Name">...input...<//>`. */
export function Field({ label, hint, children, id }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${children}
    ${hint ? html`<small class="muted">${hint}</small>` : null}
  </div>`;
}

export const fmt = {
  time(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
  },
  ms(value) {
    if (value === null || value === undefined) return "";
    const n = Number(value);
    return n >= 1000 ? `${(n / 1000).toFixed(n >= 10000 ? 0 : 1)} s` : `${Math.round(n)} ms`;
  },
  cost(value) {
    if (value === null || value === undefined) return "";
    const n = Number(value);
    return n === 0 ? "$0" : n < 0.01 ? `$${n.toFixed(5)}` : `$${n.toFixed(2)}`;
  },
  tokens(value) {
    if (value === null || value === undefined) return "";
    return Number(value).toLocaleString();
  },
  short(id) {
    return id ? String(id).slice(0, 8) : "";
  },
  json(value) {
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  },
};

let markdown = null;
const escapeHtml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// What a reply's Markdown may become: text formatting, lists, code, quotes, tables and links, nothing
// else. No forms or buttons (a reply could otherwise offer a same-origin form that approves a tool
// call: the browser would send the console's own Origin and cookie), no media (an image loads on
// render, so a prompt-injected reply could send data to any host without a click), no style, and ids
// and names prefixed (SANITIZE_NAMED_PROPS) so a reply cannot take over an element of the console.
const MARKDOWN_TAGS = [
  "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "b", "em", "i", "del", "s", "code", "pre",
  "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "sup", "sub",
];
const MARKDOWN_ATTRIBUTES = ["href", "title", "align", "start"];

// marked and DOMPurify load on the first Markdown shown, not with the page.
async function markdownKit() {
  markdown ||= Promise.all([import("./vendor/marked.mjs"), import("./vendor/purify.mjs")]).then(
    ([marked, purify]) => {
      const parser = new marked.Marked({ gfm: true, breaks: true });
      // An image in a reply becomes a link to it: seen only if the reader chooses to follow it.
      parser.use({
        renderer: {
          image: ({ href, text }) => `<a href="${escapeHtml(href)}">${escapeHtml(`image: ${text || href}`)}</a>`,
        },
      });
      const purifier = purify.default;
      // Links in a reply open in a new tab and cannot reach back into the console.
      purifier.addHook("afterSanitizeAttributes", (node) => {
        if (node.tagName === "A") {
          node.setAttribute("target", "_blank");
          node.setAttribute("rel", "noopener noreferrer nofollow");
        }
      });
      const options = {
        ALLOWED_TAGS: MARKDOWN_TAGS,
        ALLOWED_ATTR: MARKDOWN_ATTRIBUTES,
        ADD_ATTR: ["target"],
        SANITIZE_NAMED_PROPS: true,
      };
      return (text) => purifier.sanitize(parser.parse(text), options);
    },
  );
  return markdown;
}

/** Starts loading the Markdown kit now (the chat page: its history's replies will need it). */
export function warmMarkdown() {
  markdownKit().catch(() => null);
}

/** Markdown (a model's reply) rendered safely: parsed by marked, then sanitised by DOMPurify. */
export function Markdown({ text, class: className }) {
  const box = useRef(null);
  useEffect(() => {
    let live = true;
    if (!box.current) return undefined;
    // Plain text first (already safe), so streaming text shows at once; the rendered form follows.
    box.current.textContent = text || "";
    markdownKit().then((render) => {
      if (live && box.current) box.current.innerHTML = render(text || "");
    });
    return () => {
      live = false;
    };
  }, [text]);
  return html`<div class=${`markdown ${className || ""}`} ref=${box}></div>`;
}

/** An expandable JSON block. */
export function Json({ value, open }) {
  return html`<details class="json" open=${open}>
    <summary>JSON</summary>
    <pre><code>${fmt.json(value)}</code></pre>
  </details>`;
}

/** A table of `rows` by `columns` [{label, render(row)}]; `onRow` makes rows links. */
export function Table({ columns, rows, caption, rowKey = (row) => row.id, rowHref }) {
  return html`<div class="table-wrap"><table>
    ${caption ? html`<caption class="sr-only">${caption}</caption>` : null}
    <thead><tr>${columns.map((c) => html`<th scope="col">${c.label}</th>`)}</tr></thead>
    <tbody>
      ${rows.map(
        (row) => html`<tr key=${rowKey(row)}>
          ${columns.map((c, i) =>
            i === 0 && rowHref
              ? html`<td><a href=${rowHref(row)}>${c.render(row)}</a></td>`
              : html`<td>${c.render(row)}</td>`,
          )}
        </tr>`,
      )}
    </tbody>
  </table></div>`;
}

/** Says `message` in the page's live region (screen readers) and shows it briefly. */
export function notify(message) {
  // Looked up each time: the shell (and its region) is rebuilt after a sign-out and sign-in.
  const announce = document.getElementById("announce");
  if (!announce) return;
  announce.textContent = "";
  setTimeout(() => (announce.textContent = message), 20);
}

/** Reads a file chosen by the user as text. */
export function readText(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsText(file);
  });
}

/** Offers `text` as a download named `name`. */
export function download(name, text, type = "application/json") {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}
