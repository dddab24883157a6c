// Usage and cost over a window: totals, tokens / cost / traces per bucket as bar charts (each with
// its table), and the models spent on (`v1/analytics/usage` and `/cost`, docs/traces.md).
import { html, useState } from "../html.js";
import { Page, Table, useApi, pending, fmt } from "../ui.js";
import { BarChart, HBars } from "./ops_chart.js";
import { Select } from "./ops_util.js";

const PERIODS = [
  { value: "1d", label: "Last day" },
  { value: "7d", label: "Last 7 days" },
  { value: "30d", label: "Last 30 days" },
  { value: "90d", label: "Last 90 days" },
];
const GROUPS = [
  { value: "day", label: "Day" },
  { value: "week", label: "Week" },
  { value: "month", label: "Month" },
];

function short(date, group) {
  const d = new Date(`${date}T00:00:00Z`);
  if (Number.isNaN(d.getTime())) return date;
  const opts = group === "month" ? { month: "short", timeZone: "UTC" } : { month: "numeric", day: "numeric", timeZone: "UTC" };
  return d.toLocaleDateString([], opts);
}

export default function Usage() {
  const [period, setPeriod] = useState("7d");
  const [group, setGroup] = useState("day");
  const usage = useApi("v1/analytics/usage", { period, group_by: group });
  const cost = useApi("v1/analytics/cost", { period });
  const u = usage.data;
  const c = cost.data;
  const buckets = (u && u.daily) || [];
  const series = (key) => buckets.map((b) => ({ label: b.date, short: short(b.date, group), value: b[key] }));

  return html`<${Page} title="Usage & cost" wide>
    <form class="inline filters" aria-label="Window" onSubmit=${(e) => e.preventDefault()}>
      <${Select} id="usage-period" label="Period" value=${period} options=${PERIODS} onChange=${setPeriod} />
      <${Select} id="usage-group" label="Bars per" value=${group} options=${GROUPS} onChange=${setGroup} />
    </form>
    ${pending(usage) ||
    html`<ul class="stats" aria-label="Totals">
        <li><span class="stat-value" data-testid="total-tokens">${fmt.tokens(u.total_tokens)}</span><span class="stat-label">tokens</span></li>
        <li><span class="stat-value">${fmt.cost(u.total_cost)}</span><span class="stat-label">cost</span></li>
        <li><span class="stat-value">${fmt.tokens(u.total_traces)}</span><span class="stat-label">traces</span></li>
        ${c ? html`<li><span class="stat-value">${fmt.cost(c.trends.daily_average)}</span><span class="stat-label">a day on average (${c.period})</span></li>` : null}
        ${c && c.trends.weekly_growth !== null
          ? html`<li><span class="stat-value">${c.trends.weekly_growth > 0 ? "+" : ""}${(c.trends.weekly_growth * 100).toFixed(0)} %</span><span class="stat-label">cost, last 7 days on the 7 before</span></li>`
          : null}
      </ul>
      ${u.total_traces === 0
        ? html`<p class="empty muted">Nothing in this window yet. Usage counts every trace: your agents' turns (send a message in <a href="#/chat">Chat</a>) and the spans your apps send. Try a longer period.</p>`
        : null}
      <div class="charts">
        <${BarChart} title="Tokens" data=${series("tokens")} format=${(v) => fmt.tokens(Math.round(v))} />
        <${BarChart} title="Cost (USD)" data=${series("cost")} format=${(v) => (v === 0 ? "$0" : `$${v < 0.01 ? v.toPrecision(2) : v.toFixed(2)}`)} />
        <${BarChart} title="Traces" data=${series("traces")} format=${(v) => fmt.tokens(v)} integer />
      </div>
      <section aria-labelledby="models-title">
        <h2 id="models-title">Models</h2>
        ${u.top_models.length
          ? html`<div class="charts">
                <${HBars} title="Tokens by model" data=${u.top_models.map((m) => ({ label: m.model, value: m.tokens }))} format=${fmt.tokens} />
                <${HBars} title="Cost by model" data=${u.top_models.map((m) => ({ label: m.model, value: m.cost }))} format=${fmt.cost} />
              </div>
              <${Table}
                caption="Models in this window"
                rows=${u.top_models}
                rowKey=${(m) => m.model}
                columns=${[
                  { label: "Model", render: (m) => m.model },
                  { label: "Calls", render: (m) => fmt.tokens(m.calls) },
                  { label: "Share of calls", render: (m) => `${(m.usage * 100).toFixed(0)} %` },
                  { label: "Tokens", render: (m) => fmt.tokens(m.tokens) },
                  { label: "Cost", render: (m) => fmt.cost(m.cost) },
                ]}
              />`
          : html`<p class="muted">No LLM calls in this window.</p>`}
      </section>`}
  <//>`;
}
