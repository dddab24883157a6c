"""What is known about a model, for Everruns' clients: its profile (reasoning, efforts, limits,
prices, modalities) from litellm's model table, and its vendor.

The table is the one litellm ships in its wheel (`model_prices_and_context_window_backup.json`), the
same one `litellm.model_cost` holds with LITELLM_LOCAL_MODEL_COST_MAP=True (core sets it), so the
profile and the worker's cost figures agree. It is read as a file because importing litellm costs
the API process seconds at start and ~150 MB for one dictionary; no provider is ever called."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any, cast, get_args

import msgspec
import structlog

from core.schemas.llm import (
    SIMULATOR_TYPES,
    CostTier,
    Modality,
    ModelCost,
    ModelLimits,
    ModelModalities,
    ModelProfile,
    ModelVendor,
    ReasoningEffort,
    ReasoningEffortConfig,
    ReasoningEffortValue,
)

TABLE_FILE = "model_prices_and_context_window_backup.json"
# Entries for chat models; the table also prices embeddings, images, speech...
CHAT_MODES = {"chat", "responses", "completion", None}
# Where a provider type's models are in the table: (key prefixes to try, litellm providers accepted;
# None accepts any). An OpenAI-compatible server (a gateway, vLLM) may serve a model under any
# vendor's name, so its model id is looked up as it is. Simulated models have no profile.
LOOKUP: dict[str, tuple[tuple[str, ...], frozenset[str] | None]] = {
    "openai": (("", "openai/"), frozenset({"openai"})),
    "azure_openai": (("azure/",), frozenset({"azure"})),
    "anthropic": (("", "anthropic/"), frozenset({"anthropic"})),
    "openai_compatible": (("",), None),
}
VENDORS: dict[str, ModelVendor] = {"openai": "openai", "azure": "openai", "anthropic": "anthropic"}
EFFORTS: tuple[ReasoningEffort, ...] = get_args(ReasoningEffort)
MODALITIES: tuple[Modality, ...] = get_args(Modality)
_TIER = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")
_DATED = re.compile(r"[-@](\d{4}-\d{2}-\d{2}|\d{8})$")

log = structlog.get_logger("everloop.models")


@functools.cache
def table() -> dict[str, dict[str, Any]]:
    """litellm's bundled model table, read once per process (3.5 MB, ~50 ms)."""
    spec = importlib.util.find_spec("litellm")  # finds the package without importing it
    try:
        if spec is None or spec.origin is None:
            raise FileNotFoundError("litellm is not installed")
        raw = msgspec.json.decode((Path(spec.origin).parent / TABLE_FILE).read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        # A litellm that moved its table: models are listed without profiles rather than not at
        # all (tests/api/test_models_everruns.py fails on it first).
        log.warning("litellm's model table is not where it was; models have no profile", error=repr(exc))
        return {}
    return {k: v for k, v in raw.items() if isinstance(v, dict)}


def entry(provider_type: str, model_id: str) -> tuple[str, dict[str, Any]] | None:
    """The table's key and entry for a provider's model, if the table knows it."""
    if provider_type not in LOOKUP:
        return None
    prefixes, accepted = LOOKUP[provider_type]
    known = table()
    for prefix in prefixes:
        key = prefix + model_id
        found = known.get(key)
        if (
            found is not None
            and found.get("mode") in CHAT_MODES
            and (accepted is None or found.get("litellm_provider") in accepted)
        ):
            return key, found
    return None


@functools.lru_cache(maxsize=4096)
def profile(provider_type: str, model_id: str) -> ModelProfile | None:
    found = entry(provider_type, model_id)
    if found is None:
        return None
    key, info = found
    name = key.rsplit("/", 1)[-1] if key.startswith(("openai/", "azure/", "anthropic/")) else key
    reasoning = bool(info.get("supports_reasoning"))
    modalities = _modalities(info)
    return ModelProfile(
        name=name,
        # The table has no families: the name without its date (gpt-4o-mini-2024-07-18 → gpt-4o-mini).
        family=_DATED.sub("", name),
        attachment="image" in modalities.input or "pdf" in modalities.input,
        reasoning=reasoning,
        # The table does not say; OpenAI's reasoning models are the ones that refuse a temperature.
        temperature=not (reasoning and info.get("litellm_provider") in ("openai", "azure")),
        tool_call=bool(info.get("supports_function_calling")),
        structured_output=bool(info.get("supports_response_schema")),
        # The table does not say either; the vendors it is looked up under publish no weights.
        open_weights=False,
        cost=_cost(info),
        limits=_limits(info),
        modalities=modalities,
        reasoning_effort=_efforts(info) if reasoning else None,
    )


def vendor(provider_type: str, model_id: str) -> ModelVendor | None:
    """Whose model it is, when that is known: `llmsim` for simulated ones, else the table's vendor."""
    if provider_type in SIMULATOR_TYPES:
        return "llmsim"
    found = entry(provider_type, model_id)
    return VENDORS.get(found[1].get("litellm_provider", "")) if found else None


def _per_million(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return round(float(value) * 1_000_000, 6)  # 1.5e-07 per token → 0.15, without float noise


def _cost(info: dict[str, Any]) -> ModelCost | None:
    cost_in = _per_million(info.get("input_cost_per_token"))
    cost_out = _per_million(info.get("output_cost_per_token"))
    if cost_in is None or cost_out is None:
        return None
    tiers = []
    for field in info:
        if match := _TIER.match(field):
            size = match.group(1)
            tier_in = _per_million(info[field])
            tier_out = _per_million(info.get(f"output_cost_per_token_above_{size}k_tokens"))
            if tier_in is not None and tier_out is not None:
                cached = _per_million(info.get(f"cache_read_input_token_cost_above_{size}k_tokens"))
                above = int(size) * 1000
                tiers.append(CostTier(above_tokens=above, input=tier_in, output=tier_out, cache_read=cached))
    return ModelCost(
        input=cost_in,
        output=cost_out,
        cache_read=_per_million(info.get("cache_read_input_token_cost")),
        cost_tiers=sorted(tiers, key=lambda t: t.above_tokens),
    )


def _limits(info: dict[str, Any]) -> ModelLimits | None:
    context = info.get("max_input_tokens") or info.get("max_tokens")
    output = info.get("max_output_tokens")
    if isinstance(context, int) and isinstance(output, int):
        return ModelLimits(context=context, output=output)
    return None


def _modalities(info: dict[str, Any]) -> ModelModalities:
    listed_in, listed_out = info.get("supported_modalities"), info.get("supported_output_modalities")
    inputs = set(listed_in) if isinstance(listed_in, list) else {"text"}
    outputs = set(listed_out) if isinstance(listed_out, list) else {"text"}
    flagged = (("supports_vision", "image"), ("supports_pdf_input", "pdf"), ("supports_audio_input", "audio"))
    inputs |= {modality for flag, modality in flagged if info.get(flag)}
    if info.get("supports_audio_output"):
        outputs.add("audio")
    return ModelModalities(
        input=[m for m in MODALITIES if m in inputs], output=[m for m in MODALITIES if m in outputs]
    )


def _efforts(info: dict[str, Any]) -> ReasoningEffortConfig:
    """The efforts a reasoning model takes: the table's list where it has one, else what litellm
    maps for every reasoning model (low, medium, high) plus the levels the table flags."""
    listed = info.get("reasoning_effort_levels")
    if isinstance(listed, list) and listed:
        levels = set(listed)
    else:
        levels = {"low", "medium", "high"}
        levels |= {e for e in ("none", "minimal", "xhigh") if info.get(f"supports_{e}_reasoning_effort")}
    values = [e for e in EFFORTS if e in levels] or ["medium"]
    wanted = info.get("default_reasoning_effort")
    default = wanted if wanted in values else ("medium" if "medium" in values else values[0])
    names = {"xhigh": "Extra high"}
    return ReasoningEffortConfig(
        default=cast(ReasoningEffort, default),
        values=[ReasoningEffortValue(name=names.get(e, e.capitalize()), value=e) for e in values],
    )
