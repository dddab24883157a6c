// A form generated from a JSON Schema (a capability's `config_schema`): strings (an `enum` is a
// select), numbers with their bounds, booleans, lists of strings, nested objects as fieldsets, a
// choice between the branches of an `anyOf`; any other shape is edited as JSON. The value given
// back holds only what differs from the schema's defaults, which is what the API stores for a
// capability's config, so what the form shows after a reload is what was saved.
import { html, useState, useEffect } from "../html.js";

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function humanize(name) {
  // Units that names carry as a suffix (`approval_timeout_s`) read as words.
  const unit = /_s$/.test(name) ? " (seconds)" : /_ms$/.test(name) ? " (milliseconds)" : "";
  const words = String(name).replace(/_m?s$/, "").replace(/[_-]+/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").trim();
  return words.charAt(0).toUpperCase() + words.slice(1) + unit;
}

/** The schema with `X | null` folded into `X` (nullable) and a `type` list read the same way. */
export function normalize(schema) {
  if (!schema || typeof schema !== "object") return { schema: {}, nullable: false };
  const { anyOf, oneOf, ...rest } = schema;
  const branches = anyOf || oneOf;
  if (Array.isArray(branches)) {
    const real = branches.filter((b) => !(b && b.type === "null"));
    const nullable = real.length < branches.length;
    if (real.length === 1) {
      // The outer description and default win over the branch's (msgspec puts them outside).
      const inner = normalize(real[0]);
      return { schema: { ...inner.schema, ...rest }, nullable: nullable || inner.nullable };
    }
    return { schema: { ...rest, anyOf: real }, nullable };
  }
  if (Array.isArray(schema.type)) {
    const types = schema.type.filter((t) => t !== "null");
    const nullable = types.length < schema.type.length;
    return { schema: { ...schema, type: types.length === 1 ? types[0] : types }, nullable };
  }
  return { schema, nullable: false };
}

function kindOf(schema) {
  if (schema.anyOf) return "choice";
  if (Array.isArray(schema.enum)) return "enum";
  const items = schema.items && normalize(schema.items).schema;
  switch (schema.type) {
    case "string":
      return "string";
    case "integer":
    case "number":
      return "number";
    case "boolean":
      return "boolean";
    case "array":
      return items && items.type === "string" && !items.enum ? "strings" : "json";
    case "object":
      return schema.properties && Object.keys(schema.properties).length ? "object" : "json";
    default:
      return "json";
  }
}

/** Whether `schema` is an object with fields a form can show (else a capability has nothing to set). */
export function hasFields(schema) {
  return Boolean(schema && schema.properties && Object.keys(schema.properties).length);
}

/** `value` without the keys equal to their defaults (or unset), recursively for nested objects. */
export function prune(schema, value) {
  const out = {};
  const required = new Set(schema.required || []);
  for (const [name, raw] of Object.entries(schema.properties || {})) {
    const { schema: field } = normalize(raw);
    let v = value ? value[name] : undefined;
    if (v !== undefined && kindOf(field) === "object" && v && typeof v === "object") {
      v = prune(field, v);
      if (!Object.keys(v).length && !required.has(name)) v = undefined;
    }
    if (v === undefined) continue;
    if (!required.has(name) && "default" in raw && same(v, raw.default)) continue;
    if (!required.has(name) && !("default" in raw) && v === null) continue;
    out[name] = v;
  }
  // Keys the schema does not name (a config written by an API client) are kept as they were.
  for (const [name, v] of Object.entries(value || {})) if (!(name in (schema.properties || {}))) out[name] = v;
  return out;
}

function describeBounds(schema) {
  const bits = [];
  if (schema.minimum !== undefined) bits.push(`at least ${schema.minimum}`);
  if (schema.exclusiveMinimum !== undefined) bits.push(`more than ${schema.exclusiveMinimum}`);
  if (schema.maximum !== undefined) bits.push(`at most ${schema.maximum}`);
  if (schema.exclusiveMaximum !== undefined) bits.push(`less than ${schema.exclusiveMaximum}`);
  return bits.join(", ");
}

function Hint({ id, text }) {
  return text ? html`<small class="muted" id=${id}>${text}</small>` : null;
}

/** A text control that keeps what is typed (a half-typed list or number) and reports it parsed. */
function useRaw(value, format) {
  const [raw, setRaw] = useState(() => format(value));
  const [last, setLast] = useState(value);
  // A value changed from outside (a reload) replaces what is shown.
  useEffect(() => {
    if (!same(value, last)) {
      setRaw(format(value));
      setLast(value);
    }
  }, [JSON.stringify(value)]);
  return [raw, (text, parsed) => {
    setRaw(text);
    setLast(parsed);
  }];
}

function StringsField({ id, label, hint, hintId, value, onChange, required }) {
  const [raw, setRaw] = useRaw(value, (v) => (Array.isArray(v) ? v.join("\n") : ""));
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <textarea
      id=${id}
      rows="3"
      required=${required}
      aria-describedby=${`${hintId} ${id}-how`}
      value=${raw}
      onInput=${(e) => {
        const parsed = e.target.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
        setRaw(e.target.value, parsed);
        onChange(parsed);
      }}
    ></textarea>
    <${Hint} id=${hintId} text=${hint} />
    <small class="muted" id=${`${id}-how`}>One per line, or separated by commas.</small>
  </div>`;
}

function NumberField({ id, label, hint, hintId, schema, value, onChange, required, nullable }) {
  const [raw, setRaw] = useRaw(value, (v) => (v === undefined || v === null ? "" : String(v)));
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  const bounds = describeBounds(schema);
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <input
      id=${id}
      type="number"
      inputmode=${schema.type === "integer" ? "numeric" : "decimal"}
      step=${schema.type === "integer" ? "1" : "any"}
      min=${min}
      max=${max}
      required=${required}
      placeholder=${schema.default !== undefined && schema.default !== null ? String(schema.default) : ""}
      aria-describedby=${hintId}
      value=${raw}
      onInput=${(e) => {
        const text = e.target.value;
        const parsed = text === "" ? (nullable && required ? null : undefined) : Number(text);
        setRaw(text, parsed);
        if (text === "" || !Number.isNaN(parsed)) onChange(parsed);
      }}
    />
    <${Hint} id=${hintId} text=${[hint, bounds].filter(Boolean).join(" · ")} />
  </div>`;
}

function JsonField({ id, label, hint, hintId, value, onChange, required }) {
  const [raw, setRaw] = useRaw(value, (v) => (v === undefined ? "" : JSON.stringify(v, null, 2)));
  const [problem, setProblem] = useState(null);
  return html`<div class="field">
    <label for=${id}>${label} <span class="muted">(JSON)</span></label>
    <textarea
      id=${id}
      class="code"
      rows="4"
      spellcheck=${false}
      required=${required}
      aria-invalid=${problem ? "true" : undefined}
      aria-describedby=${hintId}
      value=${raw}
      onInput=${(e) => {
        const text = e.target.value;
        try {
          const parsed = text.trim() === "" ? undefined : JSON.parse(text);
          e.target.setCustomValidity("");
          setProblem(null);
          setRaw(text, parsed);
          onChange(parsed);
        } catch (error) {
          // The browser's own check then stops the form from being sent with it.
          e.target.setCustomValidity(`Not valid JSON: ${error.message}`);
          setProblem(error.message);
          setRaw(text, value);
        }
      }}
    ></textarea>
    ${problem ? html`<small class="bad">Not valid JSON: ${problem}</small>` : null}
    <${Hint} id=${hintId} text=${hint} />
  </div>`;
}

function branchLabel(branch, index) {
  if (branch.title) return branch.title;
  const kind = kindOf(normalize(branch).schema);
  return { strings: "A list…", number: "A number…", string: "Text…", enum: "One of…", object: "Settings…" }[kind] ||
    `Option ${index + 1}…`;
}

/** The choices of an `anyOf`: a boolean branch gives "No" and "Yes" itself; any other is a shape to fill. */
function choicesOf(branches) {
  const out = [];
  branches.forEach((raw, i) => {
    const b = normalize(raw).schema;
    if (b.type === "boolean") {
      out.push({ key: `${i}:false`, branch: i, fixed: false, label: "No" });
      out.push({ key: `${i}:true`, branch: i, fixed: true, label: "Yes" });
    } else out.push({ key: `${i}`, branch: i, label: branchLabel(raw, i) });
  });
  return out;
}

function choiceOf(choices, branches, value) {
  const fits = (b) => {
    const s = normalize(b).schema;
    if (Array.isArray(value)) return s.type === "array";
    if (typeof value === "number") return s.type === "number" || s.type === "integer";
    if (typeof value === "string") return s.type === "string";
    return s.type === "object";
  };
  if (typeof value === "boolean") return choices.find((c) => c.fixed === value) || choices[0];
  if (value === undefined || value === null) return choices[0];
  return choices.find((c) => c.fixed === undefined && fits(branches[c.branch])) || choices[0];
}

/** An `anyOf` of several shapes (e.g. `true`, or a list of tool names): a select, then the shape's form. */
function ChoiceField({ id, label, hint, hintId, schema, value, onChange }) {
  const branches = schema.anyOf;
  const choices = choicesOf(branches);
  const current = value === undefined ? schema.default : value;
  const [key, setKey] = useState(() => choiceOf(choices, branches, current).key);
  const choice = choices.find((c) => c.key === key) || choices[0];
  const branch = normalize(branches[choice.branch]).schema;
  return html`<div class="field schema-choice">
    <label for=${id}>${label}</label>
    <select
      id=${id}
      aria-describedby=${hintId}
      value=${key}
      onChange=${(e) => {
        const next = choices.find((c) => c.key === e.target.value);
        setKey(next.key);
        const target = normalize(branches[next.branch]).schema;
        // A new shape starts empty (or at its default): the old value does not fit it.
        onChange(next.fixed !== undefined ? next.fixed : target.default);
      }}
    >
      ${choices.map((c) => html`<option value=${c.key}>${c.label}</option>`)}
    </select>
    <${Hint} id=${hintId} text=${hint} />
    ${choice.fixed === undefined
      ? html`<div class="choice-value">
          <${SchemaField}
            id=${`${id}-value`}
            name="value"
            label=${`${label}: ${choice.label.replace("…", "").toLowerCase()}`}
            schema=${{ ...branch, description: undefined }}
            value=${choiceOf(choices, branches, current).key === key ? current : undefined}
            onChange=${onChange}
          />
        </div>`
      : null}
  </div>`;
}

/** One property's control, chosen by its schema. */
export function SchemaField({ id, name, label, schema: raw, value, onChange, required }) {
  const { schema, nullable } = normalize(raw);
  const text = label || schema.title || humanize(name);
  const hint = schema.description;
  const hintId = `${id}-hint`;
  const props = { id, label: text, hint, hintId, schema, value, onChange, required, nullable };
  switch (kindOf(schema)) {
    case "choice":
      return html`<${ChoiceField} ...${props} />`;
    case "enum":
      return html`<div class="field">
        <label for=${id}>${text}</label>
        <select
          id=${id}
          required=${required}
          aria-describedby=${hintId}
          value=${value === undefined || value === null ? "" : JSON.stringify(value)}
          onChange=${(e) => onChange(e.target.value === "" ? undefined : JSON.parse(e.target.value))}
        >
          ${required && !nullable ? null : html`<option value="">${schema.default !== undefined ? `Default (${schema.default})` : "Not set"}</option>`}
          ${schema.enum.map((option) => html`<option value=${JSON.stringify(option)}>${String(option)}</option>`)}
        </select>
        <${Hint} id=${hintId} text=${hint} />
      </div>`;
    case "string":
      return html`<div class="field">
        <label for=${id}>${text}</label>
        <input
          id=${id}
          type=${schema.format === "uri" ? "url" : "text"}
          required=${required}
          minlength=${schema.minLength}
          maxlength=${schema.maxLength}
          placeholder=${typeof schema.default === "string" ? schema.default : ""}
          aria-describedby=${hintId}
          value=${value ?? ""}
          onInput=${(e) => onChange(e.target.value === "" ? undefined : e.target.value)}
        />
        <${Hint} id=${hintId} text=${hint} />
      </div>`;
    case "number":
      return html`<${NumberField} ...${props} />`;
    case "boolean": {
      const checked = value === undefined || value === null ? Boolean(schema.default) : Boolean(value);
      return html`<div class="field">
        <div class="check">
          <input id=${id} type="checkbox" aria-describedby=${hintId} checked=${checked}
            onChange=${(e) => onChange(e.target.checked)} />
          <label for=${id}>${text}</label>
        </div>
        <${Hint} id=${hintId} text=${hint} />
      </div>`;
    }
    case "strings":
      return html`<${StringsField} ...${props} />`;
    case "object":
      return html`<fieldset class="schema-object">
        <legend>${text}</legend>
        <${Hint} id=${hintId} text=${hint} />
        <${SchemaFields} idPrefix=${id} schema=${schema} value=${value || {}} onChange=${onChange} />
      </fieldset>`;
    default:
      return html`<${JsonField} ...${props} />`;
  }
}

/** The fields of an object schema, editing `value` (an object); `onChange` gets the whole object. */
export function SchemaFields({ idPrefix, schema, value, onChange }) {
  const required = new Set(schema.required || []);
  const current = value || {};
  return html`<div class="schema-fields">
    ${Object.entries(schema.properties || {}).map(
      ([name, property]) => html`<${SchemaField}
        key=${name}
        id=${`${idPrefix}-${name}`}
        name=${name}
        schema=${property}
        required=${required.has(name)}
        value=${current[name]}
        onChange=${(next) => {
          const copy = { ...current };
          if (next === undefined) delete copy[name];
          else copy[name] = next;
          onChange(copy);
        }}
      />`,
    )}
  </div>`;
}
