"""The golden run workflow's side effects (docs/golden_tests.md): plan (the run starts), fork one
test's trace (once), judge one result (once: the semantic match's embeddings and the LLM judge are
called here, through the owner's models as a turn calls them), finish. The domain logic is
services/golden.py and services/golden_judges.py."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import litellm
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import LoopDeps
from activities.heartbeat import heartbeating
from activities.persist import persist
from activities.provider import Provider, as_application_error
from core.db.models import LlmModel
from core.schemas import golden as schema
from core.schemas.golden import GoldenCheck, GoldenLoop
from services import golden, model_calls
from services import golden_judges as judges

# ApplicationError type: the run's row is gone (its account was deleted).
RUN_GONE = "golden_run_gone"
# One embeddings call's limit, as a chat call's (activities/provider.py).
EMBED_TIMEOUT_S = 300


# A test's regex is the owner's own, run on a model's output: Python's `re` can backtrack for
# hours on a bad pattern, holding the interpreter (no thread or timeout stops it), so it is searched
# in a process of its own, killed after this long.
REGEX_LIMIT_S = 2.0
_SEARCH = (
    "import json, re, sys\n"
    "given = json.load(sys.stdin)\n"
    "sys.stdout.write('1' if re.search(given['pattern'], given['text']) else '0')\n"
)


async def search(pattern: str, text: str) -> bool | None:
    """Whether `pattern` is found in `text`; None when the search did not finish in time."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",  # isolated: no site-packages, environment or working directory on its path
        "-S",
        "-c",
        _SEARCH,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    given = json.dumps({"pattern": pattern, "text": text}).encode()
    try:
        async with asyncio.timeout(REGEX_LIMIT_S):
            out, _ = await process.communicate(given)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    if process.returncode != 0:
        raise ApplicationError(f"the regex search failed (exit {process.returncode})")
    return out == b"1"


def _gone(exc: golden.RunGone) -> ApplicationError:
    return ApplicationError(f"{exc} is gone", type=RUN_GONE, non_retryable=True)


class GoldenActivities:
    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps
        self.provider = Provider(deps)

    @activity.defn(name=GoldenLoop.PLAN)
    async def plan(self, params: schema.GoldenRunInput) -> schema.GoldenPlan:
        run_id = uuid.UUID(params.run_id)
        try:
            return await persist(
                self.deps.db, lambda db: golden.plan(db, run_id), what=f"golden run {run_id}"
            )
        except golden.RunGone as exc:
            raise _gone(exc) from None

    @activity.defn(name=GoldenLoop.FORK)
    async def fork(self, params: schema.GoldenStep) -> schema.GoldenForked:
        run_id, result_id = uuid.UUID(params.run_id), uuid.UUID(params.result_id)
        try:
            fork = await persist(
                self.deps.db,
                lambda db: golden.fork_test(db, run_id, result_id),
                what=f"golden run {run_id} result {result_id}:fork",
            )
        except golden.RunGone as exc:
            raise _gone(exc) from None
        return schema.GoldenForked(session=fork.workflow_input() if fork is not None else None)

    @activity.defn(name=GoldenLoop.JUDGE)
    async def judge(self, params: schema.GoldenJudgeInput) -> schema.GoldenVerdict:
        run_id, result_id = uuid.UUID(params.run_id), uuid.UUID(params.result_id)
        step = f"golden run {run_id} result {result_id}:judge"
        try:
            if params.failure is not None:
                await persist(
                    self.deps.db,
                    lambda db: golden.fail_result(db, run_id, result_id, params.failure or ""),
                    what=step,
                )
                return schema.GoldenVerdict(status="error")
            work = await persist(
                self.deps.db,
                lambda db: golden.judge_work(db, run_id, result_id, params.child_error),
                what=step,
            )
        except golden.RunGone as exc:
            raise _gone(exc) from None
        if work is None:
            return schema.GoldenVerdict(status="judged")
        checks = await self._checks(work, params.timed_out)
        status = await persist(
            self.deps.db,
            lambda db: golden.store_verdict(db, run_id, result_id, work, checks),
            what=f"{step}:store",
        )
        return schema.GoldenVerdict(status=status)

    @activity.defn(name=GoldenLoop.FINISH)
    async def finish(self, params: schema.GoldenRunInput) -> schema.GoldenFinished:
        run_id = uuid.UUID(params.run_id)
        try:
            return await persist(
                self.deps.db, lambda db: golden.finish(db, run_id), what=f"golden run {run_id}:finish"
            )
        except golden.RunGone as exc:
            raise _gone(exc) from None

    # ---------------------------------------------------------------------------------- the checks

    async def _checks(self, work: golden.JudgeWork, timed_out: bool) -> list[GoldenCheck]:
        """One check per outcome key, in a fixed order."""
        expected = work.expected
        checks: list[GoldenCheck] = []
        if "status" in expected:
            checks.append(
                judges.status(expected["status"], work.outcome, timed_out=timed_out, timeout_s=work.timeout_s)
            )
        elif timed_out:
            # No status asked for, but a stopped turn is no answer to judge.
            checks.append(
                GoldenCheck(
                    check="timeout",
                    passed=False,
                    expected=work.timeout_s,
                    reason=f"the forked turn was stopped: the time limit of {work.timeout_s:g} s passed",
                )
            )
        if "final_message" in expected:
            match = expected.get("match", "exact")
            if match == "semantic":
                checks.append(await self._semantic(work))
            elif match == "regex":
                pattern: str = expected["final_message"]
                found = await search(pattern, work.final_output) if work.final_output is not None else False
                checks.append(judges.regex(pattern, work.final_output, found, REGEX_LIMIT_S))
            else:
                checks.append(judges.final_message(expected["final_message"], match, work.final_output))
        if isinstance(expected.get("judge"), dict):
            checks.append(await self._judge(work))
        if "max_cost" in expected:
            checks.append(judges.max_cost(float(expected["max_cost"]), work.cost))
        if "max_duration_ms" in expected:
            checks.append(judges.max_duration(int(expected["max_duration_ms"]), work.duration_ms))
        if "tools" in expected:
            checks.append(judges.tools(expected["tools"], work.tools_called))
        return checks

    async def _semantic(self, work: golden.JudgeWork) -> GoldenCheck:
        expected: str = work.expected["final_message"]
        threshold = work.expected.get("threshold")
        if work.final_output is None:
            return judges.semantic(expected, None, None, threshold)
        refused = golden.ready(work.embedding_model, "embedding model")
        if refused is not None or work.embedding_model is None:
            return GoldenCheck(
                check="final_message.semantic", passed=False, expected=expected, reason=refused
            )
        try:
            first, second = await self._embed(work.embedding_model, [expected, work.final_output])
        except ApplicationError as exc:
            if not exc.non_retryable:
                raise  # 429, 5xx, timeouts: the workflow's retry policy tries again
            return GoldenCheck(
                check="final_message.semantic",
                passed=False,
                expected=expected,
                reason=f"the embeddings call failed: {exc.message}",
            )
        return judges.semantic(expected, work.final_output, judges.cosine(first, second), threshold)

    async def _judge(self, work: golden.JudgeWork) -> GoldenCheck:
        rubric: str = work.expected["judge"]["rubric"]
        if work.final_output is None:
            return judges.judge(rubric, None, failure="the forked turn gave no final message to judge")
        refused = golden.ready(work.judge_model, "judge model")
        if refused is not None or work.judge_model is None:
            return judges.judge(rubric, None, failure=refused)
        model = work.judge_model
        await self.provider.check_address(model.provider)
        api_key = await self.provider.api_key(model.provider)
        messages = judges.judge_messages(rubric, work.final_output, work.expected.get("final_message"))
        try:
            reply = await self.provider.complete(
                None, "", model.provider, model, api_key, messages, [], call_params={"temperature": 0}
            )
        except ApplicationError as exc:
            if not exc.non_retryable:
                raise
            return judges.judge(rubric, None, failure=f"the judge's call failed: {exc.message}")
        return judges.judge(rubric, reply.text)

    async def _embed(self, model: LlmModel, texts: list[str]) -> list[list[float]]:
        """The texts' embeddings through litellm, with the model's provider as a turn's call reaches
        it (the address check, the decrypted key, the pinned client for a user's provider)."""
        try:
            async with self.provider.access.reaching(model.provider, model) as (params, api_key):
                params.pop("extra_body", None)  # the simulator's chat settings: an embeddings call has none
                try:
                    async with heartbeating():
                        response = await litellm.aembedding(
                            **params, input=texts, timeout=EMBED_TIMEOUT_S, num_retries=0
                        )
                except Exception as exc:
                    if model_calls.is_provider_error(exc):
                        raise model_calls.failure(exc, api_key) from None
                    raise
        except model_calls.ModelCallFailed as exc:
            raise as_application_error(exc) from None
        vectors = [item["embedding"] if isinstance(item, dict) else item.embedding for item in response.data]
        if len(vectors) != len(texts):
            raise ApplicationError(
                "the embeddings answer has the wrong number of vectors", non_retryable=True
            )
        return [[float(x) for x in v] for v in vectors]
