"""The `simulator` extension object of a request: what the simulated model answers, and how badly.

Callers pass it as `extra_body={"simulator": {...}}` through litellm; the reason activity puts the LLM
model row's `settings` there. Every struct here refuses unknown fields, so a typo is a 400 naming the
field rather than a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Seconds = Annotated[float, msgspec.Meta(ge=0, le=3600)]
ToolName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

# A subset of real statuses that litellm maps to distinct exceptions, plus a hang.
ErrorKind = Literal[400, 401, 404, 429, 500, 503, "timeout"]


class SimulatorToolCall(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: ToolName
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)


class SimulatorStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One assistant turn: text, tool calls (several are parallel calls), or both."""

    text: str | None = None
    tool_calls: list[SimulatorToolCall] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.text is None and not self.tool_calls:
            raise ValueError("a script step needs `text`, `tool_calls` or both")


class SimulatorError(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fail with `status` on every request, or only on the first `times` requests of a conversation
    (counted per fingerprint of model and messages, so "fail twice, then succeed" spans retries)."""

    status: ErrorKind
    times: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # "json_schema": only a request with a `json_schema` response format fails (a provider that
    # refuses a structured-output schema, while the same request in plain text would pass).
    when: Literal["always", "json_schema"] = "always"
    message: str | None = None
    retry_after: Seconds = 1.0
    # "timeout": how long to hang before answering normally; longer than litellm's 600 s default.
    timeout_seconds: Seconds = 900.0


class SimulatorConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`echo` answers "Echo: <last user message>" (for a `json_schema` response format: a JSON value
    valid against the schema, its strings that text); `fixed` answers `text`; `script` answers step
    N, where N is the number of assistant messages after the last user message, or with
    `count_from: "start"` in the whole conversation (a `/v2/call` repair asks again in a new user
    message, so a script of an invalid answer then a valid one counts from the start); `agent` acts
    as a small tool-using model: a call to the offered tool the user's text asks for, with arguments
    from the text, then an answer from its result (api/simulator/agent.py)."""

    mode: Literal["echo", "fixed", "script", "agent"] = "echo"
    text: str | None = None
    script: list[str | SimulatorStep] = msgspec.field(default_factory=list)
    count_from: Literal["last_user", "start"] = "last_user"
    # Past the end of the script: this text, or else the last step again.
    final_text: str | None = None
    error: SimulatorError | None = None
    # Before the first streamed chunk, or before a non-streamed answer.
    first_token_delay: Seconds = 0.0
    # Between streamed chunks.
    chunk_delay: Seconds = 0.0

    def __post_init__(self) -> None:
        if self.mode == "fixed" and self.text is None:
            raise ValueError("mode `fixed` needs `text`")
        if self.mode != "fixed" and self.text is not None:
            raise ValueError("`text` is only for mode `fixed`")
        if self.mode == "script" and not self.script:
            raise ValueError("mode `script` needs a non-empty `script`")
        if self.mode != "script" and (
            self.script or self.final_text is not None or self.count_from != "last_user"
        ):
            raise ValueError("`script`, `final_text` and `count_from` are only for mode `script`")

    def steps(self) -> list[SimulatorStep]:
        return [SimulatorStep(text=step) if isinstance(step, str) else step for step in self.script]
