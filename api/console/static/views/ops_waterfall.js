// A trace as a waterfall: one row per span, nested under its parent, its bar placed by its start
// and sized by its duration on the trace's time axis. A row is a button: click or Enter opens the
// span's input and output below it; the arrow keys (and Home, End) move between rows.
import { html, useState, useMemo } from "../html.js";
import { fmt, Badge } from "../ui.js";
import { spanTokens } from "./ops_util.js";

const time = (iso) => (iso ? new Date(iso).getTime() : NaN);

/** The spans depth first (children in start order under their parent), each with its `depth`. */
export function spanTree(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  const byStart = (a, b) => (time(a.start_time) || 0) - (time(b.start_time) || 0) || a.span_id.localeCompare(b.span_id);
  for (const span of spans) {
    // A parent that is not in the trace (an app sent the child only) makes the span a root.
    const parent = span.parent_span_id && ids.has(span.parent_span_id) ? span.parent_span_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(span);
  }
  const rows = [];
  const seen = new Set();
  const walk = (parent, depth) => {
    for (const span of (children.get(parent) || []).sort(byStart)) {
      if (seen.has(span.span_id)) continue; // a cycle in sent data must not hang the page
      seen.add(span.span_id);
      rows.push({ span, depth });
      walk(span.span_id, depth + 1);
    }
  };
  walk(null, 0);
  return rows;
}

function axis(spans) {
  const starts = spans.map((s) => time(s.start_time)).filter((t) => !Number.isNaN(t));
  const ends = spans.map((s) => time(s.end_time)).filter((t) => !Number.isNaN(t));
  const start = starts.length ? Math.min(...starts) : 0;
  // A span still open runs to now, so a running turn's bars grow.
  const open = spans.some((s) => s.start_time && !s.end_time);
  const end = Math.max(start + 1, ...ends, open ? Date.now() : start + 1);
  return { start, span: end - start };
}

// Round times (0, 250 ms, 500 ms...) along the axis, about four of them.
function ticks(total) {
  const rough = total / 4;
  const power = 10 ** Math.floor(Math.log10(Math.max(rough, 1)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rough) || rough;
  const marks = [];
  for (let at = 0; at <= total + 1e-9; at += step) marks.push(at);
  return marks;
}

function Ticks({ total }) {
  return html`<div class="wf-ticks" aria-hidden="true">
    ${ticks(total).map((at) => {
      const where = (at / total) * 100;
      return html`<span class=${where > 88 ? "end" : where === 0 ? "start" : ""} style=${{ left: `${where}%` }}>${fmt.ms(at)}</span>`;
    })}
  </div>`;
}

function Content({ label, value }) {
  if (value === null || value === undefined || value === "") return html`<div><h4>${label}</h4><p class="muted">None recorded.</p></div>`;
  return html`<div><h4>${label}</h4><pre tabindex="0"><code>${fmt.json(value)}</code></pre></div>`;
}

function SpanDetail({ span, id }) {
  return html`<div class="wf-detail" id=${id} role="region" aria-label=${`Span ${span.name}`}>
    <dl class="facts">
      <dt>Span</dt><dd><code>${span.span_id}</code></dd>
      <dt>Kind</dt><dd>${span.kind}</dd>
      <dt>Status</dt><dd>${span.status}</dd>
      <dt>Started</dt><dd>${fmt.time(span.start_time)}</dd>
      <dt>Duration</dt><dd>${span.duration_ms === null ? "still running" : fmt.ms(span.duration_ms)}</dd>
      ${span.model ? html`<dt>Model</dt><dd>${span.model}${span.provider ? ` (${span.provider})` : ""}</dd>` : null}
      ${span.input_tokens !== null || span.output_tokens !== null
        ? html`<dt>Tokens</dt><dd>${fmt.tokens(span.input_tokens || 0)} in, ${fmt.tokens(span.output_tokens || 0)} out</dd>`
        : null}
      ${span.cost !== null && span.cost !== undefined ? html`<dt>Cost</dt><dd>${fmt.cost(span.cost)}</dd>` : null}
    </dl>
    ${span.error ? html`<p class="error">${span.error}</p>` : null}
    <div class="wf-io">
      <${Content} label="Input" value=${span.input} />
      <${Content} label="Output" value=${span.output} />
    </div>
    ${span.metadata && Object.keys(span.metadata).length
      ? html`<details class="json"><summary>Metadata</summary><pre><code>${fmt.json(span.metadata)}</code></pre></details>`
      : null}
  </div>`;
}

// Up and down through the rows as through a list, so a long trace needs no Tab per span.
function moveFocus(event) {
  const keys = { ArrowDown: 1, ArrowUp: -1, Home: -Infinity, End: Infinity };
  if (!(event.key in keys) || !event.target.classList.contains("wf-row")) return;
  const rows = [...event.currentTarget.querySelectorAll(".wf-row")];
  const at = rows.indexOf(event.target);
  const step = keys[event.key];
  const next = Math.abs(step) === Infinity ? (step > 0 ? rows.length - 1 : 0) : Math.min(Math.max(at + step, 0), rows.length - 1);
  event.preventDefault();
  rows[next].focus();
}

export function Waterfall({ spans }) {
  const rows = useMemo(() => spanTree(spans || []), [spans]);
  const scale = useMemo(() => axis(spans || []), [spans]);
  const [open, setOpen] = useState(() => new Set());
  if (!rows.length) return html`<p class="empty muted">This trace has no spans yet.</p>`;
  const toggle = (id) =>
    setOpen((was) => {
      const next = new Set(was);
      next.has(id) ? next.delete(id) : next.add(id);
      return next;
    });
  return html`<div class="waterfall">
    <div class="wf-head" aria-hidden="true">
      <span>Span</span>
      <${Ticks} total=${scale.span} />
      <span class="wf-num">Duration</span>
      <span class="wf-num">Tokens</span>
      <span class="wf-num">Cost</span>
    </div>
    <ol class="wf-rows" aria-label="Spans, in the order they ran" onKeyDown=${moveFocus}>
      ${rows.map(({ span, depth }, index) => {
        const start = time(span.start_time);
        const end = span.end_time ? time(span.end_time) : scale.start + scale.span;
        const left = Number.isNaN(start) ? 0 : ((start - scale.start) / scale.span) * 100;
        const width = Math.max(((end - (Number.isNaN(start) ? end : start)) / scale.span) * 100, 0.6);
        const tokens = spanTokens(span);
        const isOpen = open.has(span.span_id);
        const detailId = `span-detail-${index}`;
        const label = [
          span.name,
          span.kind,
          span.status === "error" ? "failed" : null,
          span.duration_ms === null ? "running" : fmt.ms(span.duration_ms),
          tokens ? `${tokens} tokens` : null,
          span.cost ? fmt.cost(span.cost) : null,
        ]
          .filter(Boolean)
          .join(", ");
        return html`<li key=${span.span_id} class=${`wf-item kind-${kindClass(span.kind)} ${span.status === "error" ? "failed" : ""}`}>
          <button
            type="button"
            class="wf-row"
            aria-expanded=${isOpen}
            aria-controls=${detailId}
            aria-label=${label}
            data-span=${span.span_id}
            onClick=${() => toggle(span.span_id)}
          >
            <span class="wf-name" style=${{ paddingLeft: `${depth * 1.1}rem` }}>
              <span class="wf-caret" aria-hidden="true">${isOpen ? "▾" : "▸"}</span>
              <span class="wf-label">${span.name}</span>
              <${Badge} kind=${`kind ${kindClass(span.kind)}`}>${span.kind}<//>
            </span>
            <span class="wf-track">
              <span class="wf-bar" style=${{ left: `${Math.min(left, 99.4)}%`, width: `${Math.min(width, 100 - Math.min(left, 99.4))}%` }}></span>
            </span>
            <span class="wf-num wf-dur">${span.duration_ms === null ? "…" : fmt.ms(span.duration_ms)}</span>
            <span class="wf-num wf-tok">${tokens ? `${tokens} tok` : "—"}</span>
            <span class="wf-num wf-cost">${span.cost !== null && span.cost !== undefined ? fmt.cost(span.cost) : "—"}</span>
          </button>
          ${isOpen ? html`<${SpanDetail} span=${span} id=${detailId} />` : null}
        </li>`;
      })}
    </ol>
  </div>`;
}

function kindClass(kind) {
  return ["agent", "llm", "tool", "chain", "retrieval", "embedding", "user_input"].includes(kind) ? kind : "other";
}
