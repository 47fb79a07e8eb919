"""Runs ``python -m nodes`` with counters on its event loop, for benchmarks/node_loop_turns.py.

Counts loop iterations (``_run_once``), callbacks run (``Handle._run``: every call_soon,
call_later, future callback and task step), hand-backs from other threads
(``call_soon_threadsafe``: the WAL and metadata threads) and tasks created. On SIGUSR1 the node
appends one line of JSON with the counters so far to ``$RAFTCHAOS_LOOP_COUNTS``. The counts do not
depend on how loaded the machine is, which wall-clock figures do (issue #14). Not for production:
the wrappers cost a little on every callback.
"""

from __future__ import annotations

import asyncio.base_events as base_events
import asyncio.events as events
import json
import os
import signal
import sys
from typing import Any

COUNTS = {"iterations": 0, "callbacks": 0, "threadsafe": 0, "tasks": 0}


def _install() -> None:
    run_once = base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]
    handle_run = events.Handle._run
    threadsafe = base_events.BaseEventLoop.call_soon_threadsafe
    create_task = base_events.BaseEventLoop.create_task

    def counted_run_once(self: Any) -> None:
        COUNTS["iterations"] += 1
        run_once(self)

    def counted_handle_run(self: Any) -> None:
        COUNTS["callbacks"] += 1
        handle_run(self)

    def counted_threadsafe(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["threadsafe"] += 1
        return threadsafe(self, *args, **kwargs)

    def counted_create_task(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["tasks"] += 1
        return create_task(self, *args, **kwargs)

    base_events.BaseEventLoop._run_once = counted_run_once  # type: ignore[attr-defined]
    events.Handle._run = counted_handle_run  # type: ignore[method-assign]
    base_events.BaseEventLoop.call_soon_threadsafe = counted_threadsafe  # type: ignore[method-assign,assignment]
    base_events.BaseEventLoop.create_task = counted_create_task  # type: ignore[method-assign]


def _snapshot(path: str) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(COUNTS) + "\n")


def main() -> int:
    path = os.environ["RAFTCHAOS_LOOP_COUNTS"]
    _install()
    signal.signal(signal.SIGUSR1, lambda *_: _snapshot(path))
    from nodes.__main__ import main as node_main
    return node_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
