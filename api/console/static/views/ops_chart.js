// A bar chart drawn as SVG (no chart library): an image with a label that says what it shows, and
// the same numbers as a table for screen readers and anyone who wants the values.
import { html, useState, useEffect, useRef } from "../html.js";

const H = 200;
const PAD = { top: 12, right: 8, bottom: 34, left: 52 };

function nice(max) {
  if (max <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= max) return m * step;
  return 10 * step;
}

/**
 * `data`: [{label, value}]; `format(value)` writes a value; `title` names the chart. Bars with
 * their value as a tooltip; the axis shows 0, half and the top.
 */
export function BarChart({ title, data, format = String, unit = "", integer = false }) {
  // Drawn at the figure's own width in pixels (not scaled), so its text stays readable on a phone
  // and on a wide screen alike.
  const box = useRef(null);
  const [W, setW] = useState(640);
  useEffect(() => {
    if (!box.current || typeof ResizeObserver === "undefined") return undefined;
    const watch = new ResizeObserver(([entry]) => setW(Math.max(240, Math.round(entry.contentRect.width))));
    watch.observe(box.current);
    return () => watch.disconnect();
  }, []);
  const top = nice(Math.max(0, ...data.map((d) => Number(d.value) || 0)));
  // Counts have whole-number gridlines: 0, 1, 2 rather than 0, 0.5, 1.
  const max = integer ? Math.max(2, Math.ceil(top / 2) * 2) : top;
  const inner = { w: W - PAD.left - PAD.right, h: H - PAD.top - PAD.bottom };
  const slot = inner.w / Math.max(data.length, 1);
  const bar = Math.max(Math.min(slot * 0.7, 48), 2);
  // Label every bucket when they fit, else every nth (a 90-day window has 90 buckets).
  const every = Math.max(1, Math.ceil(data.length / Math.max(2, Math.floor(inner.w / 56))));
  const total = data.reduce((sum, d) => sum + (Number(d.value) || 0), 0);
  const summary = `${title}: ${data.length} bars, total ${format(total)}${unit}, highest ${format(
    Math.max(0, ...data.map((d) => Number(d.value) || 0)),
  )}${unit}.`;
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    <div class="chart-box" ref=${box}>
    <svg width=${W} height=${H} viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${summary}>
      ${[0, 0.5, 1].map((f) => {
        const y = PAD.top + inner.h * (1 - f);
        return html`<g class="chart-grid">
          <line x1=${PAD.left} x2=${W - PAD.right} y1=${y} y2=${y} />
          <text x=${PAD.left - 6} y=${y + 4} text-anchor="end">${format(max * f)}</text>
        </g>`;
      })}
      ${data.map((d, i) => {
        const value = Number(d.value) || 0;
        const h = (value / max) * inner.h;
        const x = PAD.left + slot * i + (slot - bar) / 2;
        return html`<g class="chart-bar">
          <rect x=${x} y=${PAD.top + inner.h - h} width=${bar} height=${Math.max(h, value > 0 ? 1 : 0)} rx="2">
            <title>${d.label}: ${format(value)}${unit}</title>
          </rect>
          ${i % every === 0
            ? html`<text class="chart-x" x=${x + bar / 2} y=${H - PAD.bottom + 16} text-anchor="middle">${d.short || d.label}</text>`
            : null}
        </g>`;
      })}
    </svg>
    </div>
    <details class="chart-table">
      <summary>${title} as a table</summary>
      <div class="table-wrap"><table>
        <thead><tr><th scope="col">Bucket</th><th scope="col">Value</th></tr></thead>
        <tbody>
          ${data.map((d) => html`<tr><td>${d.label}</td><td>${format(Number(d.value) || 0)}${unit}</td></tr>`)}
        </tbody>
      </table></div>
    </details>
  </figure>`;
}

/** Horizontal bars for a few named values (models by cost): label, bar, value. */
export function HBars({ title, data, format = String }) {
  const max = Math.max(0, ...data.map((d) => Number(d.value) || 0)) || 1;
  return html`<figure class="hbars">
    <figcaption>${title}</figcaption>
    <ul aria-label=${title}>
      ${data.map((d) => {
        const value = Number(d.value) || 0;
        return html`<li>
          <span class="hbar-label">${d.label}</span>
          <span class="hbar-track" aria-hidden="true"><span class="hbar" style=${{ width: `${(value / max) * 100}%` }}></span></span>
          <span class="hbar-value">${format(value)}</span>
        </li>`;
      })}
    </ul>
  </figure>`;
}
