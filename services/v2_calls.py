"""Opper's `/v2/call` and `/v2/call/stream` (seed 000, "Task Completion"): a task (instructions, an
input, an output schema) given to one of the caller's models, its answer validated, recorded as a
span in the trace store.

How the output is kept valid against `output_schema`: the provider's structured-output mode
(`response_format` json_schema) where litellm says the model has one (and on the simulator), else
the schema in the system prompt with a JSON-only instruction; the answer is parsed and validated
with `jsonschema` (Draft 2020-12 unless `$schema` names another); a violation (or text that is not
JSON) is sent back to the model with the validator's message, at most `MAX_REPAIRS` times, then the
next model of the list is asked; 502 when none answers validly. A stream cannot take back what it
sent, so `/call/stream` does not repair: a streamed answer that fails its schema ends with an
`error` chunk.

Spans: the call is one span (`type` `call`, marked a roll-up: core/schemas/traces.ROLLUP_MARK) with
its input, output, totals of tokens and cost and the answering model; each model request (a first
answer, a repair, a model that failed and the next one tried) is a child span (`type` `llm`) with
its own model, tokens, cost and error."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs are installed
import litellm
import msgspec
import redis.asyncio as redis
import referencing.exceptions
import regex
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import LlmModel, LlmProvider
from core.errors import BadGateway, InvalidInput
from core.identity import Identity
from core.schemas import v2_calls as schema
from core.schemas.llm import SIMULATOR_TYPES
from core.schemas.traces import ROLLUP_MARK, SpanStatus, SpanWrite
from core.settings import Settings
from services import functions, model_calls, model_names, traces
from services.json_stream import JsonStream

# Repairs after the first answer: each costs a full model call, and a model that failed a schema
# three times in a row rarely gets it right on the fourth.
MAX_REPAIRS = 2
# The SDK's `invocation.cache.ttl` is capped here: a cache is not a store.
CACHE_MAX_TTL_S = 7 * 86400
CACHE_PREFIX = "everloop:v2call:"
# An answer larger than this is not cached (the cache shares the event bus's Redis, for days).
CACHE_MAX_ENTRY_BYTES = 256 * 1024
TIMEOUT_S = 300


class SchemaViolation(InvalidInput):
    """A value against its JSON Schema (Opper answers 422), or a schema that is not one."""

    status_code = 422


@dataclass
class Target:
    model: LlmModel
    provider: LlmProvider
    name: str  # as the caller wrote it
    options: dict[str, Any]


@dataclass
class Attempt:
    """One model request, a child span of the call."""

    model: str
    start: datetime
    end: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    output: str | None = None
    error: str | None = None


@dataclass
class Prepared:
    span_id: str
    data: schema.CallRequest
    targets: list[Target]
    output_validator: Any
    cache_key: str | None
    cache_ttl: int
    repairs: int
    # Added to the call span's metadata by whoever runs the call (a managed function: its ids).
    meta: dict[str, Any] = field(default_factory=dict)
    start: datetime = field(default_factory=lambda: datetime.now(UTC))
    attempts: list[Attempt] = field(default_factory=list)


# ------------------------------------------------------------------------------------ preparation


# A caller's schema runs on the API's event loop: its `pattern`s run with the `regex` module's timeout
# (Python's `re` backtracks catastrophically on `^(a+)+$`, and cannot be stopped), all of one value's
# pattern searches within PATTERN_BUDGET_S; a schema is at most MAX_SCHEMA_BYTES and MAX_SCHEMA_DEPTH.
PATTERN_BUDGET_S = 0.25
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 64
# Checking a schema against its meta-schema costs ~2 ms: a function's schemas come on every call.
VALIDATOR_CACHE_SIZE = 256
_validators: OrderedDict[str, Any] = OrderedDict()
_deadline: ContextVar[float] = ContextVar("pattern_deadline", default=0.0)


class PatternTimeout(SchemaViolation):
    """A schema's pattern took too long on a value (catastrophic backtracking): the schema is refused."""


def _search(pattern: str, text: str) -> bool:
    try:
        compiled = _compiled(pattern)
    except (regex.error, OverflowError, RecursionError) as exc:
        raise SchemaViolation(f"the schema's pattern {pattern!r} is not a valid regex ({exc})") from None
    deadline = _deadline.get() or time.monotonic() + PATTERN_BUDGET_S
    try:
        return compiled.search(text, timeout=max(deadline - time.monotonic(), 0.001)) is not None
    except TimeoutError:
        raise PatternTimeout(
            f"pattern took too long: {pattern!r} on a value of {len(text)} characters; simplify the "
            "pattern (nested repetition such as (a+)+ backtracks without end)"
        ) from None


_compiled_patterns: dict[str, Any] = {}


def _compiled(pattern: str) -> Any:
    found = _compiled_patterns.get(pattern)
    if found is None:
        if len(_compiled_patterns) >= 1024:
            _compiled_patterns.clear()
        found = _compiled_patterns[pattern] = regex.compile(pattern)
    return found


# jsonschema's own keywords with `re.search` replaced by `_search`: `pattern`, `patternProperties`
# and `additionalProperties` (which skips the keys a pattern matches).
def _pattern(validator: Any, pattern: str, instance: Any, schema_: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema_: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, allowed: Any, instance: Any, schema_: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema_.get("properties", {})
    patterns = list(schema_.get("patternProperties", {}))
    extras = [
        key
        for key in instance
        if key not in properties and not any(_search(pattern, key) for pattern in patterns)
    ]
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        if patterns:
            yield jsonschema.ValidationError(
                f"{', '.join(repr(e) for e in sorted(extras))} do not match any of the regexes: "
                f"{', '.join(repr(p) for p in sorted(patterns))}"
            )
        else:
            joined = ", ".join(repr(e) for e in sorted(extras, key=str))
            yield jsonschema.ValidationError(f"Additional properties are not allowed ({joined} unexpected)")


PATTERN_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


def _shape(value: Any, field_name: str) -> None:
    """The schema's size and depth caps; and `unevaluatedProperties` next to `patternProperties`
    (jsonschema runs those patterns with `re`, out of reach of the timeout above) is refused."""
    if len(msgspec.json.encode(value)) > MAX_SCHEMA_BYTES:
        raise SchemaViolation(f"{field_name}: a schema is at most {MAX_SCHEMA_BYTES} bytes", field=field_name)
    keys: set[str] = set()
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaViolation(
                f"{field_name}: a schema nests at most {MAX_SCHEMA_DEPTH} levels", field=field_name
            )
        if isinstance(node, dict):
            keys.update(k for k in node if isinstance(k, str))
            todo.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            todo.extend((v, depth + 1) for v in node)
    if "unevaluatedProperties" in keys and "patternProperties" in keys:
        raise SchemaViolation(
            f"{field_name}: unevaluatedProperties with patternProperties is not supported", field=field_name
        )


def validator_for(value: Any, field_name: str) -> Any:
    """A validator of the schema `value` (Draft 2020-12 unless its `$schema` says otherwise), its
    patterns run with a timeout; cached by the schema's digest (a function's come on every call)."""
    _shape(value, field_name)
    digest = hashlib.sha256(msgspec.json.encode(value, order="sorted")).hexdigest()
    found = _validators.get(digest)
    if found is not None:
        _validators.move_to_end(digest)
        return found
    base = jsonschema.validators.validator_for(value, default=jsonschema.Draft202012Validator)
    try:
        base.check_schema(value)
    except jsonschema.SchemaError as exc:
        raise SchemaViolation(
            f"{field_name} is not a valid JSON Schema: {exc.message}", field=field_name
        ) from None
    keywords = {k: v for k, v in PATTERN_KEYWORDS.items() if k in base.VALIDATORS}
    cls = jsonschema.validators.extend(base, keywords)
    found = cls(value, format_checker=base.FORMAT_CHECKER)
    _validators[digest] = found
    if len(_validators) > VALIDATOR_CACHE_SIZE:
        _validators.popitem(last=False)
    return found


def violation(validator: Any, value: Any, field_name: str) -> str | None:
    """The most relevant violation of `value`, naming its JSON path (`$.person.age`), or None. A
    pattern that takes too long is a 422 (PatternTimeout)."""
    token = _deadline.set(time.monotonic() + PATTERN_BUDGET_S)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except referencing.exceptions.Unresolvable as exc:
        # A `$ref` to nowhere, or to a URL: nothing is fetched from outside.
        raise SchemaViolation(f"{field_name}: a $ref cannot be resolved ({exc})", field=field_name) from None
    except RecursionError:
        raise SchemaViolation(f"{field_name}: the value is nested too deeply", field=field_name) from None
    finally:
        _deadline.reset(token)
    if error is None:
        return None
    return f"{error.json_path}: {error.message}"


def _configuration(data: schema.CallRequest) -> dict[str, Any]:
    return data.configuration or {}


def _cache_ttl(settings: Settings, data: schema.CallRequest) -> int:
    """0 (no cache) unless the call asks: `configuration.cache: true` (V2_CALL_CACHE_TTL) or the
    SDK's `invocation.cache.ttl` (seconds)."""
    config = _configuration(data)
    ttl = config.get("invocation.cache.ttl")
    if isinstance(ttl, int) and not isinstance(ttl, bool) and ttl > 0:
        return min(ttl, CACHE_MAX_TTL_S)
    return settings.v2_call_cache_ttl_s if config.get("cache") is True else 0


def _repairs(data: schema.CallRequest) -> int:
    # The SDK's `invocation.structured_generation.max_attempts` counts the first answer too; it
    # may lower the repairs, not raise them past MAX_REPAIRS.
    attempts = _configuration(data).get("invocation.structured_generation.max_attempts")
    if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1:
        return min(MAX_REPAIRS, attempts - 1)
    return MAX_REPAIRS


def _model_specs(data: schema.CallRequest) -> list[schema.ModelChoice]:
    given = data.model
    if given is None:
        return []
    items = given if isinstance(given, list) else [given]
    return [schema.ModelChoice(name=i) if isinstance(i, str) else i for i in items]


async def _targets(db: AsyncSession, who: Identity, data: schema.CallRequest) -> list[Target]:
    specs = _model_specs(data)
    if not specs:
        default = await db.scalar(
            select(LlmModel)
            .join(LlmProvider, LlmProvider.id == LlmModel.provider_id)
            .where(LlmModel.is_default.is_(True), model_names.visible(who.user_id))
            .limit(1)
        )
        if default is None:
            raise InvalidInput(
                "model: none given and no model is the default; GET /v2/models lists them", field="model"
            )
        specs = [schema.ModelChoice(name=str(default.id))]
    if len(specs) > 10:
        raise InvalidInput("model: at most 10 models to try", field="model")
    found = []
    for index, spec in enumerate(specs):
        where = "model" if len(specs) == 1 and not isinstance(data.model, list) else f"model[{index}]"
        row = await model_names.resolve(db, who.user_id, spec.name, field=where, kind="chat")
        provider = await db.get(LlmProvider, row.provider_id)
        assert provider is not None  # a model's provider is a foreign key
        # A custom model's options are call defaults (services/v2_models), the request's on top;
        # a simulator model's settings are its script (sent by `completion_params`), not options.
        defaults = {} if provider.provider_type in SIMULATOR_TYPES else (row.settings or {})
        options = {
            k: v for k, v in {**defaults, **(spec.options or {})}.items() if k in model_calls.CALL_OPTIONS
        }
        found.append(Target(row, provider, spec.name, options))
    return found


def _cache_key(who: Identity, data: schema.CallRequest, targets: list[Target]) -> str:
    # The resolved models (not the names: an alias and an id of one model are one call) and
    # everything that shapes the prompt; tags and the parent do not change the answer.
    identity = {
        "name": data.name,
        "instructions": data.instructions,
        "input": data.input,
        "input_schema": data.input_schema,
        "output_schema": data.output_schema,
        "examples": data.examples,
        # The model as called, not only its id: a custom model moved to another identifier or
        # provider (or given other settings) does not answer from the old one's cache.
        "models": [
            [str(t.model.id), _route(t), str(t.provider.id), t.model.settings or {}, t.options]
            for t in targets
        ],
    }
    digest = hashlib.sha256(msgspec.json.encode(identity, order="sorted")).hexdigest()
    return f"{CACHE_PREFIX}{who.user_id}:{digest}"


async def prepare(
    db: AsyncSession,
    who: Identity,
    settings: Settings,
    data: schema.CallRequest,
    *,
    few_shot: model_calls.ModelAccess | None = None,
) -> Prepared:
    """Checks the call before any model is asked (so a stream starts only for a call that can run):
    the input against `input_schema` (422 naming the path), the schemas, the model names (400).

    With `few_shot` (a plain `/v2/call`: the access that embeds the input), the call's
    `configuration.few_shot_count` takes that many examples from the dataset of the caller's managed
    function named as the call (Opper's: a call's `name` is its function), nearest the input, after
    the caller's own; none without such a function. A function's call has its examples drawn from
    its revision already (services/functions.call_request) and passes none. Drawing them ends the
    session's transaction before the embedding call (services/datasets.nearest)."""
    if data.input_schema is not None:
        problem = violation(validator_for(data.input_schema, "input_schema"), data.input, "input_schema")
        if problem is not None:
            raise SchemaViolation(f"input does not match input_schema at {problem}", field="input")
    if few_shot is not None:
        drawn = await functions.named_few_shot(db, who, few_shot, data.name, _configuration(data), data.input)
        if drawn:
            data = msgspec.structs.replace(data, examples=[*(data.examples or []), *drawn])
    output_validator = None
    if data.output_schema is not None:
        output_validator = validator_for(data.output_schema, "output_schema")
    targets = await _targets(db, who, data)
    ttl = _cache_ttl(settings, data)
    return Prepared(
        span_id=str(uuid.uuid4()),
        data=data,
        targets=targets,
        output_validator=output_validator,
        cache_key=_cache_key(who, data, targets) if ttl else None,
        cache_ttl=ttl,
        repairs=_repairs(data),
    )


# ---------------------------------------------------------------------------------------- prompts


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)


def structured_mode(access: model_calls.ModelAccess, target: Target, output_schema: Any) -> bool:
    """Whether the call goes with a `json_schema` response format: for an object-root schema (OpenAI
    refuses any other root with a 400; the prompt mode does those) on a model that takes one: the
    simulator does, and whatever litellm's model table says supports one."""
    if not isinstance(output_schema, dict) or output_schema.get("type") != "object":
        return False
    if target.provider.provider_type in SIMULATOR_TYPES:
        return True
    try:
        route = access.params(target.provider, target.model, None)["model"]
        return bool(litellm.supports_response_schema(model=route))
    except Exception:  # a model litellm does not know
        return False


def response_format(data: schema.CallRequest) -> dict[str, Any]:
    # OpenAI's strict mode needs every property required and no additional ones: only a schema
    # already written so is sent as strict; the validator here checks every answer anyway.
    assert data.output_schema is not None
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "".join(c if c.isalnum() or c in "_-" else "_" for c in data.name)[:64] or "output",
            "schema": data.output_schema,
            "strict": _strict(data.output_schema),
        },
    }


def _strict(node: Any) -> bool:
    if isinstance(node, list):
        return all(_strict(n) for n in node)
    if not isinstance(node, dict):
        return True
    properties = node.get("properties")
    if isinstance(properties, dict) and (
        node.get("additionalProperties") is not False or set(node.get("required", [])) != set(properties)
    ):
        return False
    return all(_strict(v) for v in node.values())


def messages(data: schema.CallRequest, structured: bool) -> list[dict[str, Any]]:
    """The prompt: the task, its instructions, the examples (few-shot) and, for a model without a
    structured-output mode, the schema to answer in; then the input as the user's message."""
    parts = [f"You complete the task `{data.name}`."]
    if data.instructions:
        parts.append(data.instructions)
    if data.output_schema is not None and not structured:
        parts.append(
            "Answer with only a JSON value that is valid against this JSON Schema: no prose and no "
            "Markdown fence.\n" + json.dumps(data.output_schema, ensure_ascii=False)
        )
    if data.examples:
        shown = []
        for number, example in enumerate(data.examples, 1):
            text = f"Example {number}\nInput: {_as_text(example.input)}\nOutput: {_as_text(example.output)}"
            if example.comment:
                text += f"\nComment: {example.comment}"
            shown.append(text)
        parts.append("Examples of inputs and the outputs expected:\n\n" + "\n\n".join(shown))
    user = _as_text(data.input) if data.input is not None else "(no input)"
    return [{"role": "system", "content": "\n\n".join(parts)}, {"role": "user", "content": user}]


def parsed(validator: Any, text: str) -> tuple[Any, str | None]:
    """The answer's JSON and its violation of the output schema (None: valid)."""
    candidate = text.strip()
    if candidate.startswith("```"):  # a model without a structured mode may fence its JSON anyway
        candidate = candidate.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not JSON ({exc.msg} at character {exc.pos})"
    except (RecursionError, ValueError):  # the model's text is caller-influenced: `[[[[...` nests without end
        return None, "the answer is nested too deeply"
    try:
        return value, violation(validator, value, "output_schema")
    except SchemaViolation as exc:  # a pattern that took too long, a value nested too deeply
        return value, exc.message


# ------------------------------------------------------------------------------------------- calls


def _now() -> datetime:
    return datetime.now(UTC)


async def _ask(
    access: model_calls.ModelAccess,
    target: Target,
    prompt: list[dict[str, Any]],
    data: schema.CallRequest,
    structured: bool,
) -> tuple[str, int, int, Decimal]:
    extra: dict[str, Any] = {**target.options, "num_retries": 0, "timeout": TIMEOUT_S}
    async with access.reaching(target.provider, target.model, extra) as (params, api_key):
        if structured:
            params["response_format"] = response_format(data)
        try:
            response = await litellm.acompletion(messages=prompt, **params)
        except Exception as exc:
            if model_calls.is_provider_error(exc):
                raise model_calls.failure(exc, api_key) from None
            raise
        usage = getattr(response, "usage", None)
        input_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        output_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        text = response.choices[0].message.content or ""
        return (
            text,
            input_tokens,
            output_tokens,
            model_calls.cost_of(params["model"], input_tokens, output_tokens),
        )


def _route(target: Target) -> str:
    return model_names.route_name(target.provider.provider_type, target.model.model_id)


async def complete(
    db: AsyncSession,
    redis_client: redis.Redis,
    who: Identity,
    access: model_calls.ModelAccess,
    call: Prepared,
) -> schema.CallResponse:
    """The answer: from the cache when asked and present, else from the first model that answers
    (repaired up to `call.repairs` times against the output schema: a model that still fails it
    hands over to the next, as a provider error does). Recorded as a span either way."""
    cached = await _cached(redis_client, call)
    if cached is not None:
        await record(db, who, call, cached=cached)
        return _response(call, cached, from_cache=True)
    failures: list[str] = []
    for target in call.targets:
        try:
            answer = await _answer(access, target, call)
        except model_calls.ModelCallFailed as exc:
            failures.append(f"{target.name}: {exc.message}")
            continue
        except BadGateway as exc:  # the schema was not met after the repairs: the next model may
            failures.append(f"{target.name}: {exc.message}")
            continue
        await _store(redis_client, call, answer)
        await record(db, who, call, answer=answer)
        return _response(call, answer, from_cache=False)
    error = "every model failed: " + "; ".join(failures)
    await record(db, who, call, error=error)
    raise BadGateway(error)


def refused_structure(exc: model_calls.ModelCallFailed, structured: bool) -> bool:
    """Whether a failure is the provider refusing the structured-output request itself (a 400 to a
    `json_schema` response format: a schema feature it does not take, a model without the mode that
    litellm's table says has it): the same call in the prompt mode may well pass."""
    return structured and exc.status == 400


async def _answer(access: model_calls.ModelAccess, target: Target, call: Prepared) -> dict[str, Any]:
    data = call.data
    structured = structured_mode(access, target, data.output_schema)
    prompt = messages(data, structured)
    problem: str | None = None
    repairs = 0
    while repairs <= call.repairs:
        attempt = Attempt(model=_route(target), start=_now(), end=_now())
        call.attempts.append(attempt)
        try:
            text, attempt.input_tokens, attempt.output_tokens, attempt.cost = await _ask(
                access, target, prompt, data, structured
            )
        except model_calls.ModelCallFailed as exc:
            attempt.end, attempt.error = _now(), exc.message
            if not refused_structure(exc, structured):
                raise
            # Once per model, and not counted as a repair: the schema goes into the prompt instead
            # (the conversation starts again: a repair's messages asked for the structured mode).
            attempt.error += "; asked again with the schema in the prompt"
            structured, problem = False, None
            prompt = messages(data, structured)
            continue
        attempt.end, attempt.output = _now(), text
        if call.output_validator is None:
            return {"message": text, "json_payload": None, "model": attempt.model}
        value, problem = parsed(call.output_validator, text)
        if problem is None:
            return {"message": None, "json_payload": value, "model": attempt.model}
        attempt.error = f"output_schema violation: {problem}"
        repairs += 1
        prompt = [
            *prompt,
            {"role": "assistant", "content": text},
            {
                "role": "user",
                "content": f"Your answer does not match the output JSON Schema: {problem}. Answer again "
                "with only the corrected JSON.",
            },
        ]
    raise BadGateway(
        f"the model's answer did not match output_schema after {call.repairs} repairs; the last "
        f"violation: {problem}"
    )


async def _store(redis_client: redis.Redis, call: Prepared, answer: dict[str, Any]) -> bool:
    """Caches the answer when the call asked for it and it is at most CACHE_MAX_ENTRY_BYTES."""
    if call.cache_key is None:
        return False
    encoded = msgspec.json.encode(answer)
    if len(encoded) > CACHE_MAX_ENTRY_BYTES:
        return False
    await redis_client.set(call.cache_key, encoded, ex=call.cache_ttl)
    return True


async def _cached(redis_client: redis.Redis, call: Prepared) -> dict[str, Any] | None:
    if call.cache_key is None:
        return None
    raw = await redis_client.get(call.cache_key)
    if raw is None:
        return None
    found: dict[str, Any] = msgspec.json.decode(raw)
    return found


def _totals(call: Prepared) -> tuple[int, int, Decimal]:
    return (
        sum(a.input_tokens for a in call.attempts),
        sum(a.output_tokens for a in call.attempts),
        sum((a.cost for a in call.attempts), Decimal(0)),
    )


def _response(call: Prepared, answer: dict[str, Any], *, from_cache: bool) -> schema.CallResponse:
    # A cached answer spent nothing: its usage and cost are 0 (its span says `cached`).
    input_tokens, output_tokens, cost = (0, 0, Decimal(0)) if from_cache else _totals(call)
    return schema.CallResponse(
        span_id=call.span_id,
        message=answer.get("message"),
        json_payload=answer.get("json_payload"),
        cached=from_cache,
        usage=schema.Usage(
            input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
        ),
        cost=schema.Cost(generation=float(cost), platform=0.0, total=float(cost)),
    )


# ------------------------------------------------------------------------------------------- spans


async def record(
    db: AsyncSession,
    who: Identity,
    call: Prepared,
    *,
    answer: dict[str, Any] | None = None,
    cached: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """The call's span, under `parent_span_id` (in its trace) when the caller owns that span, else
    the root of a new trace named after the call; each model request a child span."""
    data = call.data
    shown = answer or cached or {}
    input_tokens, output_tokens, cost = _totals(call)
    status: SpanStatus = "error" if error else "ok"
    metadata: dict[str, Any] = {
        "tags": data.tags or {},
        "cached": cached is not None,
        "models": [t.name for t in call.targets],
        "instructions": data.instructions,
        "output_schema": data.output_schema,
        **call.meta,
        # Its tokens and cost restate its model requests' (the child spans): counted once, there.
        **ROLLUP_MARK,
    }
    spans = [
        SpanWrite(
            span_id=call.span_id,
            parent_span_id=data.parent_span_id,
            name=data.name,
            kind="call",
            status=status,
            input=data.input,
            output=shown.get("json_payload")
            if shown.get("json_payload") is not None
            else shown.get("message"),
            error=error,
            metadata=metadata,
            start_time=call.start,
            end_time=_now(),
            model=shown.get("model"),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
        )
    ]
    for number, attempt in enumerate(call.attempts):
        spans.append(
            SpanWrite(
                span_id=f"{call.span_id}.{number}",
                parent_span_id=call.span_id,
                name=f"{data.name} (model request {number + 1})",
                kind="llm",
                status="error" if attempt.error else "ok",
                output=attempt.output,
                error=attempt.error,
                start_time=attempt.start,
                end_time=attempt.end,
                model=attempt.model,
                input_tokens=attempt.input_tokens,
                output_tokens=attempt.output_tokens,
                cost=attempt.cost,
            )
        )
    # The trace's status is the call's when the call made it (under a parent, the parent's writer
    # owns it): a failed call's trace is `error`, as rerank's and OCR's are.
    await traces.write_call(
        db, who.user_id, spans, name=data.name, parent_span_id=data.parent_span_id, status=status
    )
    await db.commit()


# ---------------------------------------------------------------------------------------- stream


def sse(chunk: schema.StreamChunk) -> bytes:
    return b"data: " + msgspec.json.encode(chunk) + b"\n\n"


async def stream(
    sessions: Callable[[], AsyncSession],
    redis_client: redis.Redis,
    who: Identity,
    access: model_calls.ModelAccess,
    call: Prepared,
) -> AsyncIterator[bytes]:
    """Server-sent events of chunks (`schema.StreamChunk`) as the model writes; the span is written
    when the stream ends, in a session of its own (the request's is gone by then)."""
    outcome: dict[str, Any] = {}
    try:
        async for frame in _frames(redis_client, access, call, outcome):
            yield frame
    finally:

        async def write() -> None:
            async with sessions() as db:
                await record(
                    db,
                    who,
                    call,
                    answer=outcome.get("answer"),
                    cached=outcome.get("cached"),
                    error=outcome.get("error", "the client left before the end" if not outcome else None),
                )

        # A client that leaves mid-stream cancels this generator: the span is written all the same.
        await asyncio.shield(write())


async def _frames(
    redis_client: redis.Redis, access: model_calls.ModelAccess, call: Prepared, outcome: dict[str, Any]
) -> AsyncIterator[bytes]:
    data = call.data
    kind = "json" if data.output_schema is not None else "text"
    cached = await _cached(redis_client, call)
    if cached is not None:
        outcome["cached"] = cached
        text = cached["message"] if kind == "text" else json.dumps(cached["json_payload"], ensure_ascii=False)
        for chunk in _chunks(call, kind, JsonStream(), text):
            yield sse(chunk)
        for chunk in _end_chunks(call, kind, JsonStream()):
            yield sse(chunk)
        return
    failures: list[str] = []
    todo = [(target, structured_mode(access, target, data.output_schema)) for target in call.targets]
    while todo:
        target, structured = todo.pop(0)
        attempt = Attempt(model=_route(target), start=_now(), end=_now())
        call.attempts.append(attempt)
        tokenizer, pieces, sent = JsonStream(), [], False
        try:
            async for piece, usage in _deltas(access, target, messages(data, structured), data, structured):
                if usage is not None:
                    attempt.input_tokens, attempt.output_tokens = usage
                if piece:
                    pieces.append(piece)
                    for chunk in _chunks(call, kind, tokenizer, piece):
                        sent = True
                        yield sse(chunk)
        except model_calls.ModelCallFailed as exc:
            attempt.end, attempt.error = _now(), exc.message
            if not sent and refused_structure(exc, structured):  # as `_answer`: once, in prompt mode
                attempt.error += "; asked again with the schema in the prompt"
                todo.insert(0, (target, False))
                continue
            if not sent:  # nothing of this model's answer went out: the next model may answer
                failures.append(f"{target.name}: {exc.message}")
                continue
            outcome["error"] = f"{target.name}: {exc.message}"
            yield sse(_error(call, "model_error", outcome["error"]))
            return
        for chunk in _end_chunks(call, kind, tokenizer):
            yield sse(chunk)
        text = "".join(pieces)
        attempt.end, attempt.output = _now(), text
        attempt.cost = model_calls.cost_of(attempt.model, attempt.input_tokens, attempt.output_tokens)
        if call.output_validator is None:
            outcome["answer"] = {"message": text, "json_payload": None, "model": attempt.model}
            return
        value, problem = parsed(call.output_validator, text)
        if problem is not None:
            attempt.error = outcome["error"] = f"the answer does not match output_schema: {problem}"
            yield sse(_error(call, "output_schema_violation", outcome["error"]))
            return
        answer = {"message": None, "json_payload": value, "model": attempt.model}
        outcome["answer"] = answer
        await _store(redis_client, call, answer)
        return
    outcome["error"] = "every model failed: " + "; ".join(failures)
    yield sse(_error(call, "model_error", outcome["error"]))


async def _deltas(
    access: model_calls.ModelAccess,
    target: Target,
    prompt: list[dict[str, Any]],
    data: schema.CallRequest,
    structured: bool,
) -> AsyncIterator[tuple[str, tuple[int, int] | None]]:
    extra: dict[str, Any] = {**target.options, "num_retries": 0, "timeout": TIMEOUT_S}
    async with access.reaching(target.provider, target.model, extra) as (params, api_key):
        if structured:
            params["response_format"] = response_format(data)
        try:
            response = await litellm.acompletion(
                messages=prompt, stream=True, stream_options={"include_usage": True}, **params
            )
            async for chunk in response:
                usage = getattr(chunk, "usage", None)
                counted = None
                if usage is not None:
                    counted = (int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
                piece = chunk.choices[0].delta.content if chunk.choices else None
                yield piece or "", counted
        except Exception as exc:
            if model_calls.is_provider_error(exc):
                raise model_calls.failure(exc, api_key) from None
            raise


def _chunks(call: Prepared, kind: str, tokenizer: JsonStream, piece: str) -> list[schema.StreamChunk]:
    if kind == "text":
        return [schema.StreamChunk(span_id=call.span_id, chunk_type="text", delta=piece)]
    return [
        schema.StreamChunk(span_id=call.span_id, chunk_type="json", delta=delta, json_path=path)
        for path, delta in tokenizer.feed(piece)
    ]


def _end_chunks(call: Prepared, kind: str, tokenizer: JsonStream) -> list[schema.StreamChunk]:
    if kind == "text":
        return []
    return [
        schema.StreamChunk(span_id=call.span_id, chunk_type="json", delta=delta, json_path=path)
        for path, delta in tokenizer.finish()
    ]


def _error(call: Prepared, error_type: str, message: str) -> schema.StreamChunk:
    return schema.StreamChunk(
        span_id=call.span_id, chunk_type="error", delta=message, error_type=error_type, error_message=message
    )
