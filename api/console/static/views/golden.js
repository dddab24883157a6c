// Golden tests: the pinned turns and the outcome each must keep, runs of a chosen few (with an
// optional change: another model, a temperature, a prompt), and each run's verdicts with reasons.
import { html, useState } from "../html.js";
import { api } from "../api.js";
import { Page, Table, Status, ErrorNote, useApi, useAction, pending, fmt, notify } from "../ui.js";
import { PinForm } from "./ops_forms.js";
import { usePoll } from "./ops_util.js";

const RUNNING = new Set(["pending", "running"]);

export default function Golden() {
  const tests = useApi("v1/golden-tests", { limit: 200 });
  const runs = useApi("v1/golden-tests/runs", { limit: 20 });
  const [chosen, setChosen] = useState(() => new Set());
  const [model, setModel] = useState("");
  const [openRun, setOpenRun] = useState(null);
  const list = (tests.data && tests.data.golden_tests) || [];
  const runList = (runs.data && runs.data.runs) || [];
  usePoll(() => runs.reload(), runList.some((r) => RUNNING.has(r.status)), 1500);

  const start = useAction(async () => {
    const body = { test_ids: [...chosen] };
    if (model.trim()) body.modifications = { model: model.trim() };
    return api.post("v1/golden-tests/run", body);
  });
  const remove = useAction(async (test) => {
    await api.del(`v1/golden-tests/${test.id}`);
    notify(`Deleted ${test.name}`);
    tests.reload();
  });
  const run = async (e) => {
    e.preventDefault();
    const started = await start.run();
    if (started) {
      notify(`Run started: ${started.total_tests} test(s)`);
      setOpenRun(started.run_id);
      runs.reload();
    }
  };
  const toggle = (id) =>
    setChosen((was) => {
      const next = new Set(was);
      next.has(id) ? next.delete(id) : next.add(id);
      return next;
    });

  return html`<${Page} title="Golden tests" wide>
    <section aria-labelledby="tests-title">
      <h2 id="tests-title">Tests</h2>
      ${pending(tests) ||
      (list.length === 0
        ? html`<p class="empty muted">No golden tests yet. Open a turn's trace (from <a href="#/sessions">Sessions</a> or <a href="#/traces">Traces</a>) and use <strong>Pin as a golden test</strong>, or give a turn's id below.</p>`
        : html`<form aria-label="Run golden tests" onSubmit=${run}>
            <${Table}
              caption="Golden tests"
              rows=${list}
              columns=${[
                {
                  label: "Run",
                  render: (t) => html`<input type="checkbox" aria-label=${`Choose ${t.name}`} checked=${chosen.has(t.id)} onChange=${() => toggle(t.id)} />`,
                },
                { label: "Name", render: (t) => t.name },
                { label: "Turn", render: (t) => html`<a href=${`#/traces/${encodeURIComponent(t.trace_id)}`}><code>${fmt.short(t.trace_id)}</code></a>` },
                { label: "Expects", render: (t) => html`<code class="wrap">${JSON.stringify(t.expected_outcome)}</code>` },
                { label: "Tags", render: (t) => (t.tags || []).join(", ") },
                { label: "Created", render: (t) => fmt.time(t.created_at) },
                {
                  label: "Delete",
                  render: (t) => html`<button type="button" class="danger" aria-label=${`Delete ${t.name}`}
                    onClick=${() => confirm(`Delete the golden test ${t.name}? Its runs keep their results.`) && remove.run(t)}>Delete</button>`,
                },
              ]}
            />
            <div class="inline run-bar">
              <div class="field">
                <label for="golden-model">Run with model (name or id; empty: as recorded)</label>
                <input id="golden-model" value=${model} onInput=${(e) => setModel(e.currentTarget.value)} />
              </div>
              <button class="primary" type="submit" disabled=${start.busy || chosen.size === 0}>
                Run ${chosen.size || ""} selected
              </button>
              <button type="button" onClick=${() => setChosen(new Set(list.map((t) => t.id)))}>Choose all</button>
            </div>
            <${ErrorNote} error=${start.error || remove.error} />
          </form>`)}
      <details class="card start-card">
        <summary>Pin a turn by its id</summary>
        <${PinForm} onCreated=${() => tests.reload()} />
      </details>
    </section>

    <section aria-labelledby="runs-title">
      <h2 id="runs-title">Runs</h2>
      ${pending(runs) ||
      (runList.length === 0
        ? html`<p class="empty muted">No runs yet. Choose tests above and run them: each pinned turn is forked, run again and judged.</p>`
        : html`<ul class="runs">
            ${runList.map(
              (r) => html`<li key=${r.run_id} class="card run">
                <button type="button" class="run-head" aria-expanded=${openRun === r.run_id}
                  onClick=${() => setOpenRun(openRun === r.run_id ? null : r.run_id)}>
                  <span>Run <code>${fmt.short(r.run_id)}</code></span>
                  <${Status} value=${r.status} />
                  <span>${r.passed} passed, ${r.failed} failed of ${r.total_tests}</span>
                  <span class="muted">${fmt.time(r.created_at)}</span>
                </button>
                ${openRun === r.run_id ? html`<${RunDetail} id=${r.run_id} status=${r.status} />` : null}
              </li>`,
            )}
          </ul>`)}
    </section>
  <//>`;
}

function RunDetail({ id, status }) {
  const run = useApi(`v1/golden-tests/runs/${id}`, null, [status]);
  const r = run.data;
  usePoll(() => run.reload(), Boolean(r && RUNNING.has(r.status)), 1500);
  if (!r) return pending(run);
  return html`<div class="run-detail">
    ${Object.keys(r.modifications || {}).length ? html`<p>Modifications: <code>${JSON.stringify(r.modifications)}</code></p>` : null}
    ${r.error ? html`<p class="error">${r.error}</p>` : null}
    ${(r.results || []).map(
      (res) => html`<article class="verdict" aria-label=${`${res.name}: ${res.status}`}>
        <h3><${Status} value=${res.status} /> ${res.name}</h3>
        ${res.error ? html`<p class="error">${res.error}</p>` : null}
        ${res.checks.length
          ? html`<${Table}
              caption=${`Checks of ${res.name}`}
              rows=${res.checks}
              rowKey=${(c) => c.check}
              columns=${[
                { label: "Check", render: (c) => c.check },
                { label: "Verdict", render: (c) => html`<${Status} value=${c.passed ? "passed" : "failed"} />` },
                { label: "Expected", render: (c) => fmt.json(c.expected ?? "") },
                { label: "Actual", render: (c) => fmt.json(c.actual ?? "") },
                { label: "Reason", render: (c) => c.reason || "" },
              ]}
            />`
          : null}
        <p class="muted small">
          ${res.duration_ms !== null ? `${fmt.ms(res.duration_ms)} · ` : ""}${res.cost !== null ? fmt.cost(res.cost) : ""}
          ${res.replay_id ? html` · <a href=${`#/replays/${res.replay_id}`}>its fork</a>` : null}
          ${res.diff && res.diff.length ? ` · ${res.diff.length} change(s) from the original` : ""}
        </p>
      </article>`,
    )}
  </div>`;
}
