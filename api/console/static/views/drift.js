// Drift: the summary (open alerts by severity), the alerts (open ones, or all), resolve one, and
// run the detection now rather than waiting for the hourly schedule (docs/drift.md).
import { html, useState } from "../html.js";
import { api } from "../api.js";
import { Page, Table, Badge, ErrorNote, useApi, useAction, pending, fmt, notify } from "../ui.js";
import { useAgents, agentName } from "./ops_util.js";

const SEVERITY = { high: "bad", medium: "warn", low: "neutral" };

function change(alert) {
  if (alert.change === null || alert.change === undefined) return "new";
  if (alert.metric === "error_rate") return `${alert.change > 0 ? "+" : ""}${(alert.change * 100).toFixed(1)} pts`;
  return `${alert.change > 0 ? "+" : ""}${(alert.change * 100).toFixed(0)} %`;
}

function number(v) {
  if (v === null || v === undefined) return "";
  const n = Number(v);
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 1 ? n.toFixed(2) : n.toPrecision(3);
}

export default function Drift() {
  const [all, setAll] = useState(false);
  const agents = useAgents();
  const summary = useApi("v1/drift/summary");
  const alerts = useApi("v1/drift/alerts", { include_resolved: all ? "true" : undefined, limit: 200 });
  const reload = () => {
    summary.reload();
    alerts.reload();
  };
  const detect = useAction(async () => {
    const answer = await api.post("v1/drift/run", {});
    notify(`Detection ran: ${answer.groups_tested} group(s) tested, ${answer.alerts_created} new alert(s)`);
    reload();
    return answer;
  });
  const resolve = useAction(async (alert) => {
    await api.post(`v1/drift/alerts/${alert.id}/resolve`, {});
    notify("Alert resolved");
    reload();
  });
  const s = summary.data;
  const rows = Array.isArray(alerts.data) ? alerts.data : [];

  return html`<${Page} title="Drift" wide
    actions=${html`<button type="button" onClick=${() => detect.run()} disabled=${detect.busy}>
      ${detect.busy ? "Detecting…" : "Run detection now"}</button>`}>
    <${ErrorNote} error=${detect.error || resolve.error} />
    ${pending(summary) ||
    html`<ul class="stats" aria-label="Drift summary">
      <li><span class="stat-value">${s.unresolved}</span><span class="stat-label">open alerts</span></li>
      <li class=${s.by_severity.high ? "sev-high" : ""}><span class="stat-value">${s.by_severity.high}</span><span class="stat-label">high</span></li>
      <li class=${s.by_severity.medium ? "sev-medium" : ""}><span class="stat-value">${s.by_severity.medium}</span><span class="stat-label">medium</span></li>
      <li><span class="stat-value">${s.by_severity.low}</span><span class="stat-label">low</span></li>
      <li><span class="stat-value">${s.total_alerts}</span><span class="stat-label">ever raised</span></li>
    </ul>`}
    <div class="check">
      <input id="drift-all" type="checkbox" checked=${all} onChange=${(e) => setAll(e.currentTarget.checked)} />
      <label for="drift-all">Show resolved alerts too</label>
    </div>
    ${pending(alerts) ||
    (rows.length === 0
      ? html`<p class="empty muted">No ${all ? "" : "open "}drift alerts. Every hour Everloop compares the last day of your traces with the week before, per agent (or trace name) and model: latency, cost, tokens, output length, error rate and tool mix. A metric needs enough LLM calls in both windows (30 by default) to be tested. <strong>Run detection now</strong> checks at once.</p>`
      : html`<${Table}
          caption="Drift alerts"
          rows=${rows}
          columns=${[
            { label: "Severity", render: (a) => html`<${Badge} kind=${SEVERITY[a.severity] || ""}>${a.severity}<//>` },
            { label: "Metric", render: (a) => a.metric + (a.details && a.details.tool ? ` (${a.details.tool})` : "") },
            {
              label: "Scope",
              render: (a) => html`${a.scope_kind === "agent"
                ? html`agent <a href=${`#/agents/${a.scope}`}>${agentName(agents.byId[a.scope]) || fmt.short(a.scope)}</a>`
                : html`<code>${a.scope}</code>`}${a.model ? ` · ${a.model}` : ""}`,
            },
            {
              label: "Samples",
              render: (a) => (a.windows ? `${a.windows.baseline?.count ?? "?"} → ${a.windows.current?.count ?? "?"}` : ""),
            },
            { label: "Baseline → now", render: (a) => `${number(a.baseline_value)} → ${number(a.current_value)}` },
            { label: "Change", render: (a) => change(a) },
            { label: "p-value", render: (a) => (a.p_value === null ? "" : Number(a.p_value).toExponential(1)) },
            { label: "Found", render: (a) => fmt.time(a.created_at) },
            {
              label: "Resolve",
              render: (a) => (a.resolved_at
                ? html`<span class="muted">resolved ${fmt.time(a.resolved_at)}</span>`
                : html`<button type="button" aria-label=${`Resolve the ${a.metric} alert`} onClick=${() => resolve.run(a)} disabled=${resolve.busy}>Resolve</button>`),
            },
          ]}
        />`)}
  <//>`;
}
