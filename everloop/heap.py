"""The long-lived heap of a server process, set aside from the garbage collector once it has started.

CPython's full (generation 2) collection walks every tracked object. An API or worker process holds
a few hundred thousand of them after its imports (Litestar's routes, SQLAlchemy's mappers, the
Temporal SDK, litellm's tables), none of which ever becomes garbage, so each full collection took
180-660 ms on the API while it served 1,000 streams: every stream of the process stalled that long,
and it set the p99 of one event's fan-out (docs/benchmarks.md). `gc.freeze()` moves what exists now
into a generation the collector never visits; objects made later are collected as before.

Called by the entry points once the process has started (`everloop api`, `everloop worker`), never
by `create_app` or `build_worker`: a test process makes many apps and workers, and what was frozen
is never freed, garbage cycles among it included (hence the collection just before).
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collects the start-up garbage, then sets every object alive now aside from future collections;
    returns how many objects were set aside (for the log)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
