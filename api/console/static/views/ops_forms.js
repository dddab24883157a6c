// The two things an operator starts from a turn: a fork from one of its reasoning steps
// (`POST v1/replays`, docs/replay.md) and a golden test pinning it (`POST v1/golden-tests`).
import { html, useState, useEffect, useRef } from "../html.js";
import { api, items } from "../api.js";
import { ErrorNote, useAction, navigate, notify } from "../ui.js";

// One key per request the user means: kept while the form's values stay the same, so a click again
// after a lost answer (or an error) gets the fork already started, not a second one. randomUUID is
// only in secure contexts (a console served over plain HTTP on a LAN address has none).
function requestKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

/** The user's models, for a modification's `model` (by id). */
function useModels() {
  const [models, setModels] = useState([]);
  useEffect(() => {
    api.get("v1/llm-models").then((answer) => setModels(items(answer))).catch(() => setModels([]));
  }, []);
  return models;
}

/** The modifications a form's fields say: only what was set. */
function modifications({ model, temperature, systemPrompt }) {
  const mods = {};
  if (model) mods.model = model;
  if (temperature !== "") mods.temperature = Number(temperature);
  if (systemPrompt.trim()) mods.system_prompt = systemPrompt;
  return mods;
}

function ModificationFields({ prefix, value, onChange, models }) {
  const set = (key) => (e) => onChange({ ...value, [key]: e.currentTarget.value });
  return html`<div class="field">
      <label for=${`${prefix}-model`}>Model</label>
      <select id=${`${prefix}-model`} value=${value.model} onChange=${set("model")}>
        <option value="">As recorded</option>
        ${models.map((m) => html`<option value=${m.id}>${m.display_name || m.model_id} (${m.provider_name || m.provider?.name || ""})</option>`)}
      </select>
    </div>
    <div class="field">
      <label for=${`${prefix}-temperature`}>Temperature</label>
      <input id=${`${prefix}-temperature`} type="number" min="0" max="2" step="0.1" placeholder="as recorded"
        value=${value.temperature} onInput=${set("temperature")} />
    </div>
    <div class="field wide-field">
      <label for=${`${prefix}-system`}>System prompt</label>
      <textarea id=${`${prefix}-system`} rows="2" placeholder="The agent's own, unless you write one here"
        value=${value.systemPrompt} onInput=${set("systemPrompt")}></textarea>
    </div>`;
}

/**
 * Fork `traceId` from one of its reasoning `steps` (the trace's numbered steps; none given: a step
 * number typed in). Goes to the replay's page once it has started.
 */
export function ForkForm({ traceId, steps }) {
  const models = useModels();
  const reasoning = (steps || []).filter((s) => s.type === "llm_call");
  const [trace, setTrace] = useState(traceId || "");
  const [step, setStep] = useState(reasoning.length ? String(reasoning[0].step_number) : "1");
  const [mode, setMode] = useState("auto");
  const [mods, setMods] = useState({ model: "", temperature: "", systemPrompt: "" });
  const key = useRef({ body: null, value: null });
  const start = useAction(async () => {
    const body = { trace_id: trace.trim(), mode, fork_from_step: Number(step) };
    const changes = modifications(mods);
    if (Object.keys(changes).length) body.modifications = changes;
    const same = JSON.stringify(body);
    if (key.current.body !== same) key.current = { body: same, value: requestKey() };
    return api.post("v1/replays", body, { headers: { "Idempotency-Key": key.current.value } });
  });
  const submit = async (e) => {
    e.preventDefault();
    const started = await start.run();
    if (started) {
      notify("Fork started");
      navigate(`#/replays/${started.replay_id}`);
    }
  };
  return html`<form class="inline ops-form" aria-label="Fork this turn" onSubmit=${submit}>
    ${traceId
      ? null
      : html`<div class="field">
          <label for="fork-trace">Turn (trace id)</label>
          <input id="fork-trace" required value=${trace} onInput=${(e) => setTrace(e.currentTarget.value)} />
        </div>`}
    <div class="field">
      <label for="fork-step">From step</label>
      ${reasoning.length
        ? html`<select id="fork-step" value=${step} onChange=${(e) => setStep(e.currentTarget.value)}>
            ${reasoning.map((s) => html`<option value=${String(s.step_number)}>Step ${s.step_number}: ${s.name}${s.model ? ` (${s.model})` : ""}</option>`)}
          </select>`
        : html`<input id="fork-step" type="number" min="1" required value=${step} onInput=${(e) => setStep(e.currentTarget.value)} />`}
    </div>
    <div class="field">
      <label for="fork-mode">Mode</label>
      <select id="fork-mode" value=${mode} onChange=${(e) => setMode(e.currentTarget.value)}>
        <option value="auto">Run through</option>
        <option value="interactive">Step by step (holds before each step)</option>
      </select>
    </div>
    <${ModificationFields} prefix="fork" value=${mods} onChange=${setMods} models=${models} />
    <button class="primary" type="submit" disabled=${start.busy}>${start.busy ? "Starting…" : "Start fork"}</button>
    <${ErrorNote} error=${start.error} />
  </form>`;
}

/** Pin a turn as a golden test: its name and the outcome it must keep. */
export function PinForm({ traceId, finalText, onCreated }) {
  const [trace, setTrace] = useState(traceId || "");
  const [name, setName] = useState("");
  const [status, setStatus] = useState("completed");
  const [message, setMessage] = useState(finalText || "");
  const [match, setMatch] = useState("contains");
  const create = useAction(async () => {
    const expected = {};
    if (status) expected.status = status;
    if (message.trim()) {
      expected.final_message = message;
      expected.match = match;
    }
    return api.post("v1/golden-tests", { trace_id: trace.trim(), name: name.trim(), expected_outcome: expected });
  });
  const submit = async (e) => {
    e.preventDefault();
    const test = await create.run();
    if (test) {
      notify(`Golden test ${test.name} created`);
      if (onCreated) onCreated(test);
      else navigate("#/golden");
    }
  };
  return html`<form class="inline ops-form" aria-label="Pin as a golden test" onSubmit=${submit}>
    ${traceId
      ? null
      : html`<div class="field">
          <label for="pin-trace">Turn (trace id)</label>
          <input id="pin-trace" required value=${trace} onInput=${(e) => setTrace(e.currentTarget.value)} />
        </div>`}
    <div class="field">
      <label for="pin-name">Test name</label>
      <input id="pin-name" required maxlength="255" value=${name} onInput=${(e) => setName(e.currentTarget.value)} />
    </div>
    <div class="field">
      <label for="pin-status">Expected outcome</label>
      <select id="pin-status" value=${status} onChange=${(e) => setStatus(e.currentTarget.value)}>
        <option value="completed">completed</option>
        <option value="failed">failed</option>
        <option value="cancelled">cancelled</option>
        <option value="">any</option>
      </select>
    </div>
    <div class="field">
      <label for="pin-match">Final message match</label>
      <select id="pin-match" value=${match} onChange=${(e) => setMatch(e.currentTarget.value)}>
        <option value="contains">contains</option>
        <option value="exact">exact</option>
        <option value="regex">regex</option>
        <option value="json_subset">JSON subset</option>
      </select>
    </div>
    <div class="field wide-field">
      <label for="pin-message">Expected final message (empty: not checked)</label>
      <textarea id="pin-message" rows="2" value=${message} onInput=${(e) => setMessage(e.currentTarget.value)}></textarea>
    </div>
    <button class="primary" type="submit" disabled=${create.busy}>Create golden test</button>
    <${ErrorNote} error=${create.error} />
  </form>`;
}
