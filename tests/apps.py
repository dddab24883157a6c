"""The API app for a test, reused across tests: building one registers some 400 routes (most of a
second of CPU, far more on two busy cores), which made up a large part of the suite's time when
every test built its own.

Reuse is safe because an app's connections belong to one lifespan (one `AsyncTestClient` or
`running` server): when it ends they are closed and the app gets fresh ones (api/app.py), so no
pool, cache or event-loop-bound lock of one test's reaches the next. An app serves one lifespan at
a time: it goes back to the pool when its lifespan ends, and a test that needs two at once (two
servers on the same settings) gets two."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import msgspec
from litestar import Litestar
from litestar.types import ControllerRouterHandler

from api.app import create_app
from core.settings import Settings

_free: defaultdict[tuple[bytes, tuple[ControllerRouterHandler, ...]], list[Litestar]] = defaultdict(list)


def app_for(
    settings: Settings,
    *,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
    configure_logs: bool = False,
) -> Litestar:
    """`create_app(settings, ...)`, or a free app made before with the same arguments."""
    if configure_logs:  # logging is process-wide: a test that asks for it gets it done again
        return create_app(settings, extra_handlers=extra_handlers, configure_logs=True)
    key = (msgspec.json.encode(settings, enc_hook=str), tuple(extra_handlers))
    free = _free[key]
    if free:
        return free.pop()
    app = create_app(settings, extra_handlers=extra_handlers, configure_logs=False)
    # Taken out of the pool now, back when its lifespan ends: shutdown hooks run after the
    # lifespan's own exit, which has closed its connections by then.
    app.on_shutdown.append(lambda: free.append(app))
    return app
