// A session's stored events as a timeline, paged forward by `after_sequence` (docs/api.md, "Session
// events"), grouped under the turn each belongs to. It asks for what came after the last one every
// second while `live` (a running turn or fork, watched), every few seconds otherwise (a new turn
// started elsewhere shows up, and makes the page live).
import { html, useState, useEffect, useRef } from "../html.js";
import { api, items } from "../api.js";
import { ErrorNote, fmt } from "../ui.js";
import { eventSummary, eventKind, usePoll } from "./ops_util.js";

const PAGE = 100;

function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso || "";
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

/** `path`: the session's events route; `onEvents(list)` hears every page (to spot a turn's end). */
export function EventTimeline({ path, live = false, onEvents }) {
  const [state, setState] = useState({ events: [], total: null, error: null, loading: true, more: false });
  const busy = useRef(false);
  const last = useRef(0);
  const hear = useRef(onEvents);
  hear.current = onEvents;

  const load = async (reset) => {
    if (busy.current) return;
    busy.current = true;
    try {
      const after = reset ? 0 : last.current;
      const answer = await api.get(path, { after_sequence: after, limit: PAGE });
      const page = items(answer);
      if (page.length) last.current = page[page.length - 1].sequence;
      setState((s) => {
        const events = reset ? page : [...s.events, ...page];
        return { events, total: answer.total, error: null, loading: false, more: page.length === PAGE };
      });
      if (page.length && hear.current) hear.current(page);
    } catch (error) {
      setState((s) => ({ ...s, error, loading: false }));
    } finally {
      busy.current = false;
    }
  };

  useEffect(() => {
    last.current = 0;
    load(true);
  }, [path]);
  usePoll(() => load(false), !state.more, live ? 1000 : 5000);

  if (state.loading) return html`<p class="muted" role="status">Loading events…</p>`;
  const groups = [];
  for (const event of state.events) {
    const turn = event.context?.turn_id || null;
    const current = groups[groups.length - 1];
    // A user's message comes before its turn starts: it opens the group its turn will fill.
    if (current && (current.turn === turn || (current.turn === null && current.open))) {
      current.turn ||= turn;
      current.events.push(event);
    } else groups.push({ turn, events: [event], open: event.type === "message.user" });
  }
  return html`<div class="timeline">
    <${ErrorNote} error=${state.error} />
    ${state.events.length === 0
      ? html`<p class="empty muted">No events yet. Post a message to this session (in Chat) and its turn shows up here.</p>`
      : null}
    ${groups.map(
      (group) => html`<section class="tl-turn" aria-label=${group.turn ? `Turn ${fmt.short(group.turn)}` : "Session events"}>
        ${group.turn
          ? html`<h3 class="tl-head">Turn <code>${fmt.short(group.turn)}</code>
              <a href=${`#/traces/${group.turn}`}>Trace waterfall</a></h3>`
          : null}
        <ol class="tl-list">
          ${group.events.map(
            (event) => html`<li key=${event.id} class=${`tl-item ${eventKind(event.type)}`}>
              <details>
                <summary>
                  <span class="tl-seq" aria-label="sequence">${event.sequence}</span>
                  <time datetime=${event.ts} class="tl-time">${clock(event.ts)}</time>
                  <span class=${`tl-type badge ${eventKind(event.type)}`}>${event.type}</span>
                  <span class="tl-sum">${eventSummary(event)}</span>
                </summary>
                <pre tabindex="0"><code>${fmt.json(event)}</code></pre>
              </details>
            </li>`,
          )}
        </ol>
      </section>`,
    )}
    ${state.more
      ? html`<button type="button" onClick=${() => load(false)}>Load more events</button>`
      : live
        ? html`<p class="muted tl-live" role="status">Watching for new events…</p>`
        : null}
  </div>`;
}
