"""Judging a golden test's forked turn against its expected outcome (docs/golden_tests.md): one
check per outcome key, each a pure function of what was expected and what the fork did. The two
that need a model (semantic similarity, the LLM judge) take its answer (the embeddings, the judge's
reply) as an argument: activities/golden.py makes those calls."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from core.schemas.golden import DEFAULT_THRESHOLD, GoldenCheck

# What the judge model is told; its answer must be this JSON object and nothing else.
JUDGE_SYSTEM = (
    "You are a strict evaluator of an AI agent's answer. You are given a rubric and the agent's final "
    "answer. Decide whether the answer satisfies the rubric. Reply with only a JSON object "
    '{"pass": true or false, "reason": "one sentence saying why"} and nothing else.'
)
# An answer wrapped in prose or a code fence: its first {...} is tried.
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
# How much of a long value a check's `actual` shows (the full output is the result's final_output).
SHOWN = 500


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SHOWN:
        return value[:SHOWN] + "…"
    return value


def status(expected: str, outcome: str | None, *, timed_out: bool, timeout_s: float | None) -> GoldenCheck:
    passed = outcome == expected
    reason = None
    if not passed:
        reason = f"the forked turn ended {outcome or 'without an outcome'}, not {expected}"
        if timed_out:
            reason += f" (it was stopped: the run's time limit of {timeout_s:g} s passed)"
    return GoldenCheck(check="status", passed=passed, expected=expected, actual=outcome, reason=reason)


def final_message(expected: Any, match: str, actual: str | None) -> GoldenCheck:
    """The `exact`, `contains` and `json_subset` matches (`regex`: `regex`, `semantic`: `semantic`)."""
    check = f"final_message.{match}"
    if actual is None:
        return GoldenCheck(
            check=check, passed=False, expected=expected, reason="the forked turn gave no final message"
        )
    passed: bool
    reason: str | None = None
    if match == "exact":
        passed = actual.strip() == str(expected).strip()
        reason = None if passed else "the final message is not the expected one"
    elif match == "contains":
        passed = str(expected) in actual
        reason = None if passed else "the final message does not contain the expected text"
    elif match == "json_subset":
        passed, reason = json_subset(expected, actual)
    else:
        raise ValueError(f"not a text match: {match}")
    return GoldenCheck(check=check, passed=passed, expected=expected, actual=_short(actual), reason=reason)


def regex(pattern: str, actual: str | None, found: bool | None, limit_s: float) -> GoldenCheck:
    """The `regex` match, from the search's result: `found` None when it did not finish in time."""
    check = "final_message.regex"
    if actual is None:
        return GoldenCheck(
            check=check, passed=False, expected=pattern, reason="the forked turn gave no final message"
        )
    reason: str | None
    if found is None:
        reason = (
            f"the pattern did not finish within {limit_s:g} s on the final message (it backtracks "
            "too much: simplify it)"
        )
    else:
        reason = None if found else f"the final message does not match the pattern {pattern!r}"
    return GoldenCheck(
        check=check, passed=bool(found), expected=pattern, actual=_short(actual), reason=reason
    )


def json_subset(expected: Any, actual_text: str) -> tuple[bool, str | None]:
    """Whether the final message, parsed as JSON, contains `expected` (an expected string is parsed
    as JSON first); the reason names the first path that differs."""
    if isinstance(expected, str):
        expected = json.loads(expected)  # checked when the test was created
    try:
        actual = json.loads(actual_text)
    except ValueError:
        found = _OBJECT.search(actual_text)
        try:
            actual = json.loads(found.group(0)) if found else None
        except ValueError:
            actual = None
        if actual is None:
            return False, "the final message is not JSON"
    missing = subset_mismatch(expected, actual, "$")
    return (missing is None), missing


def subset_mismatch(expected: Any, actual: Any, path: str) -> str | None:
    """None when `actual` contains `expected`: every key of an expected object (recursively), every
    item of an expected array matched by some item of the actual array, any other value equal.
    Else what differs, at which path."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {_kind(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key}: missing"
            found = subset_mismatch(value, actual[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected an array, got {_kind(actual)}"
        for i, item in enumerate(expected):
            if not any(subset_mismatch(item, candidate, path) is None for candidate in actual):
                return f"{path}[{i}]: no item of the array contains {json.dumps(item)[:200]}"
        return None
    # JSON's 1 and 1.0 are one number; a bool is not a number.
    same = expected == actual and isinstance(expected, bool) == isinstance(actual, bool)
    return None if same else f"{path}: expected {json.dumps(expected)[:200]}, got {json.dumps(actual)[:200]}"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return "an object" if isinstance(value, dict) else f"{type(value).__name__} {json.dumps(value)[:100]}"


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def semantic(
    expected: str, actual: str | None, similarity: float | None, threshold: float | None
) -> GoldenCheck:
    limit = DEFAULT_THRESHOLD if threshold is None else threshold
    if actual is None or similarity is None:
        return GoldenCheck(
            check="final_message.semantic",
            passed=False,
            expected=expected,
            reason="the forked turn gave no final message",
        )
    passed = similarity >= limit
    return GoldenCheck(
        check="final_message.semantic",
        passed=passed,
        expected=expected,
        actual={"similarity": round(similarity, 4), "threshold": limit, "final_message": _short(actual)},
        reason=None if passed else f"similarity {similarity:.3f} is below the threshold {limit:g}",
    )


def judge_messages(rubric: str, actual: str, expected: Any = None) -> list[dict[str, Any]]:
    parts = [f"Rubric:\n{rubric}"]
    if isinstance(expected, str):
        parts.append(f"The expected answer, for reference:\n{expected}")
    parts.append(f"The agent's final answer:\n{actual}")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def judge(rubric: str, reply: str | None, *, failure: str | None = None) -> GoldenCheck:
    """The LLM judge's verdict from its reply (`{"pass": bool, "reason": str}`); `failure`: why there
    is no reply (no final message, a call that failed for good)."""
    if failure is not None or reply is None:
        return GoldenCheck(check="judge", passed=False, expected=rubric, reason=failure or "no verdict")
    verdict = parse_verdict(reply)
    if verdict is None:
        return GoldenCheck(
            check="judge",
            passed=False,
            expected=rubric,
            actual=_short(reply),
            reason='the judge did not answer with a JSON object {"pass": bool, "reason": str}',
        )
    passed, why = verdict
    return GoldenCheck(
        check="judge",
        passed=passed,
        expected=rubric,
        actual={"pass": passed, "reason": why},
        reason=None if passed else f"the judge failed it: {why}",
    )


def parse_verdict(reply: str) -> tuple[bool, str] | None:
    for candidate in (reply.strip(), *(m.group(0) for m in [_OBJECT.search(reply)] if m)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("pass"), bool):
            reason = value.get("reason")
            return value["pass"], reason if isinstance(reason, str) else ""
    return None


def max_cost(limit: float, cost: float | None) -> GoldenCheck:
    spent = cost or 0.0
    passed = spent <= limit
    return GoldenCheck(
        check="max_cost",
        passed=passed,
        expected=limit,
        actual=spent,
        reason=None if passed else f"the forked turn cost {spent:g}, more than {limit:g}",
    )


def max_duration(limit_ms: int, duration_ms: int | None) -> GoldenCheck:
    took = duration_ms or 0
    passed = took <= limit_ms
    return GoldenCheck(
        check="max_duration_ms",
        passed=passed,
        expected=limit_ms,
        actual=took,
        reason=None if passed else f"the forked turn took {took} ms, more than {limit_ms} ms",
    )


def tools(expected: Sequence[str], called: Sequence[str]) -> GoldenCheck:
    missing = [t for t in expected if t not in called]
    return GoldenCheck(
        check="tools",
        passed=not missing,
        expected=list(expected),
        actual=sorted(set(called)),
        reason=None if not missing else f"the forked turn did not call {', '.join(missing)}",
    )
