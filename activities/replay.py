"""The replay workflow's side effects (docs/replay.md): plan (the run starts), re-execute one
mutated LLM span through the caller's provider, finish (the result trace and the outcome). The
domain logic is services/replays.py; this module calls the model and keeps each step's promise:
an answer is stored under its replay and span as soon as it is back, and an attempt that finds it
stored does not call the model again."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import LoopDeps
from activities.persist import persist
from activities.provider import Provider, fatal
from core.errors import InvalidInput
from core.net import NetPolicy, url_refusal
from core.schemas import replays as schema
from core.schemas.replays import ReplayLoop
from services import replays
from services.conversation import IMAGE_DNS_TIMEOUT_S

# ApplicationError types: the replay's row is gone; a span that can no longer be re-executed.
REPLAY_GONE = "replay_gone"
SPAN_REFUSED = "replay_span_refused"


class ReplayActivities:
    def __init__(self, deps: LoopDeps) -> None:
        self.deps = deps
        self.provider = Provider(deps)

    @activity.defn(name=ReplayLoop.PLAN)
    async def plan(self, params: schema.ReplayInput) -> schema.ReplayPlan:
        replay_id = uuid.UUID(params.replay_id)
        try:
            return await persist(
                self.deps.db, lambda db: replays.plan(db, replay_id), what=f"replay {replay_id}"
            )
        except replays.ReplayGone as exc:
            raise ApplicationError(f"{exc} is gone", type=REPLAY_GONE, non_retryable=True) from None

    @activity.defn(name=ReplayLoop.RUN_SPAN)
    async def run_span(self, params: schema.ReplaySpanInput) -> schema.ReplaySpanResult:
        replay_id, span_id = uuid.UUID(params.replay_id), params.span_id
        step = f"replay {replay_id} span {span_id}"
        try:
            call = await persist(
                self.deps.db, lambda db: replays.prepare_call(db, replay_id, span_id), what=f"{step}:prepare"
            )
        except replays.ReplayGone as exc:
            raise ApplicationError(f"{exc} is gone", type=REPLAY_GONE, non_retryable=True) from None
        except InvalidInput as exc:
            raise ApplicationError(exc.message, type=SPAN_REFUSED, non_retryable=True) from None
        if call is None:
            # An earlier attempt stored the answer and died before reporting it: not called twice.
            return schema.ReplaySpanResult(span_id=span_id, found_stored=True)
        await self.provider.check_address(call.provider)
        await self._check_images(call)
        api_key = await self.provider.api_key(call.provider)
        output = await self._complete(call, api_key)
        await persist(
            self.deps.db,
            lambda db: replays.store_output(db, replay_id, span_id, output),
            what=f"{step}:store",
        )
        return schema.ReplaySpanResult(span_id=span_id)

    @activity.defn(name=ReplayLoop.FINISH)
    async def finish(self, params: schema.ReplayFinishInput) -> schema.ReplayOutcome:
        replay_id = uuid.UUID(params.replay_id)
        try:
            return await persist(
                self.deps.db,
                lambda db: replays.finish(db, replay_id, params.failures),
                what=f"replay {replay_id}:finish",
            )
        except replays.ReplayGone as exc:
            raise ApplicationError(f"{exc} is gone", type=REPLAY_GONE, non_retryable=True) from None

    async def _check_images(self, call: replays.Call) -> None:
        """The messages' image URLs must be on public addresses, as a turn's are (its `reason` step
        checks the stored conversation): the provider may have this server fetch them."""
        policy = NetPolicy(allow_loopback=self.deps.settings.outbound_allow_loopback)
        for url in replays.image_urls(call.messages):
            reason = await url_refusal(url, policy, dns_wait_s=IMAGE_DNS_TIMEOUT_S)
            if reason is not None:
                raise fatal(
                    "image_url_refused",
                    None,
                    f"an image URL of the messages was refused by this server: {reason} (an image must "
                    "be on a public internet address), so the model was not called",
                )

    async def _complete(self, call: replays.Call, api_key: str | None) -> dict[str, Any]:
        """One streamed call, as a turn's `reason` makes it (Provider.complete: the same litellm
        route, pinned client for a user's provider, time limit, heartbeats and error mapping),
        without a session: a replay has no stream whose deltas it would publish."""
        reply = await self.provider.complete(
            None, "", call.provider, call.model, api_key, call.messages, call.tools, call_params=call.params
        )
        return replays.output_record(
            call,
            text_out=reply.text,
            tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in reply.calls],
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost=reply.cost,
            duration_ms=reply.duration_ms,
            finish_reason=reply.finish_reason,
        )
