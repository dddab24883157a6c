"""Opper's managed functions and datasets under `/v2` (seed 000, "Functions", "Datasets"; the
`opperai` SDK 1.7.2's models where the two differ). A function is a stored call definition; its
dataset holds examples. Dataset entries answer `input`, `output` and `expected` as strings (the
SDK's models declare them so): a string given is returned as it was, anything else as its JSON."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from core.schemas.v2_calls import ModelField

# Request bodies ignore fields they do not know, as Opper's server does: a later 1.7.x SDK that
# sends one more field must not turn its calls into 422s (docs/v2.md, "Real clients beat our
# reading of a spec"). /v1's bodies still refuse them.

# Opper's function names: letters, digits and `/ . - _` (a `/` groups them: "support/triage").
FunctionName = Annotated[str, msgspec.Meta(min_length=1, max_length=300, pattern=r"^[A-Za-z0-9/._-]+$")]
Instructions = Annotated[str, msgspec.Meta(max_length=200_000)]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Comment = Annotated[str, msgspec.Meta(max_length=10_000)]
TopK = Annotated[int, msgspec.Meta(ge=1, le=100)]
# `configuration` keys that set how many dataset examples a call takes: the SDK's name first, the
# seed's second.
FEW_SHOT_KEYS = ("invocation.few_shot.count", "few_shot_count")


class CreateFunction(msgspec.Struct, kw_only=True):
    name: FunctionName
    instructions: Instructions
    description: Description | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    # A model name, a list of names (tried in order), or `{"name": ..., "options": {...}}`.
    model: ModelField | None = None
    configuration: dict[str, Any] | None = None


class UpdateFunction(msgspec.Struct, kw_only=True):
    """Fields left out stay; a change to any of them makes a new revision."""

    name: FunctionName | msgspec.UnsetType = msgspec.UNSET
    instructions: Instructions | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    input_schema: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    output_schema: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    model: ModelField | msgspec.UnsetType | None = msgspec.UNSET
    configuration: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET


class FunctionOut(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str | None
    instructions: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    model: Any
    configuration: dict[str, Any]
    dataset_id: uuid.UUID
    revision_id: uuid.UUID
    # Opper's clients read it; evaluations are not run here.
    observer_enabled: bool = False
    created_at: datetime
    updated_at: datetime


class FunctionSummary(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    description: str | None
    instructions: str
    model: Any
    revision_id: uuid.UUID
    dataset_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class Revision(msgspec.Struct, kw_only=True):
    """A function's definition as one change left it (`number` counts from 1). The SDK's revision
    list reads `id`, `configuration` and the times; the rest is the whole definition."""

    id: uuid.UUID
    function_id: uuid.UUID
    number: int
    name: str
    description: str | None
    instructions: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    model: Any
    configuration: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class Example(msgspec.Struct, kw_only=True):
    input: Any
    output: Any
    comment: Comment | None = None


class CallFunction(msgspec.Struct, kw_only=True):
    """A call of a stored function: its definition supplies the rest."""

    input: Any = None
    parent_span_id: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    examples: list[Example] | None = None
    tags: dict[str, str] | None = None


# ------------------------------------------------------------------------------------------ datasets


class CreateEntry(msgspec.Struct, kw_only=True):
    input: Any
    output: Any
    expected: Any = None
    comment: Comment | None = None


class UpdateEntry(msgspec.Struct, kw_only=True):
    input: Any | msgspec.UnsetType = msgspec.UNSET
    output: Any | msgspec.UnsetType = msgspec.UNSET
    expected: Any | msgspec.UnsetType = msgspec.UNSET
    comment: Comment | msgspec.UnsetType | None = msgspec.UNSET


class Entry(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    dataset_id: uuid.UUID
    input: str
    output: str
    expected: str | None
    comment: str | None
    created_at: datetime
    updated_at: datetime


class ScoredEntry(Entry, kw_only=True):
    """A query's match: `score` is the cosine similarity of its input to the query (1 = same)."""

    score: float


class QueryBody(msgspec.Struct, kw_only=True):
    """The seed's `POST /v2/datasets/{id}/query` body; the SDK sends `query` and `limit` as query
    parameters instead (either works)."""

    query: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
    limit: TopK | None = None
    top_k: TopK | None = None


class SavedExample(msgspec.Struct, kw_only=True):
    """`POST /v2/spans/{id}/save_examples`: the entry a call span became."""

    dataset_id: uuid.UUID
    dataset_entry_id: uuid.UUID
    input: str
    output: str
    expected: str | None
    comment: str | None
