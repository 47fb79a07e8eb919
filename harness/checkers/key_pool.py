"""Searching many keys under one deadline and one memory budget: interleaved in a worker, dealt over processes.

Keys are independent registers, so their searches can run in any order and in parallel. Within a
worker the searches advance in slices, round robin: a key that would search for minutes cannot
starve a key that fails in milliseconds, and once one key is found not linearizable the verdict is
settled, so (unless every key must be explained) the rest stop at once. Porcupine does the same
with one goroutine per partition and a kill channel (``checker.go``, ``checkParallel``).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.checkers.key_result import KeyResult, budget_reason, unknown
from harness.checkers.kv_model import KeyModel
from harness.checkers.verdict import Validity
from harness.checkers.wgl import search_steps

# Below this many ops left to search, starting processes costs more than it saves.
PARALLEL_MIN_OPS = 1000
# Before dealing keys over processes, search them all here this long: most histories (and most
# violations) are decided by then, and starting workers would cost more than the whole check.
HEAD_START_S = 0.05
MAX_TURN = 32  # slices a key gets per turn once turns have grown (they double from one)
# Past the deadline, how long a worker may take to send its answer before it is stopped: a turn of
# slices is a few ms, and the answer of a stopped worker is rebuilt here (its keys unknown).
STOP_GRACE_S = 0.25


@dataclass(frozen=True)
class Budget:
    """What one check may spend: ``deadline`` is a ``time.monotonic`` value (system-wide on Linux,
    so workers share it), ``memory_bytes`` the estimated memo bytes of all keys searched at once."""

    deadline: float
    memory_bytes: int
    max_states: int | None = None
    stop_at_invalid: bool = True


def settled_reason(key: str) -> str:
    return f"not checked further: key {key!r} already settled the verdict (not linearizable)"


def run_keys(models: Sequence[KeyModel], budget: Budget, stop: Any = None, pause_at: float | None = None,
             paused: dict[int, float] | None = None) -> dict[int, KeyResult]:
    """Search ``models`` round robin in this process; results by position in ``models``.

    Turns start at one slice a key and double each round (up to ``MAX_TURN``): keys decided in a
    few thousand steps are decided first, whatever their order. Past ``pause_at`` (a monotonic
    time) the keys still searching are left out of the results (their time so far goes in
    ``paused``) for the caller to search elsewhere.

    ``stop`` (a multiprocessing Event, optional) is set here when a key is found not linearizable
    and ``budget.stop_at_invalid``; when another worker sets it, the keys still searching here end
    unknown, each with the states and time it really used. Over the memory budget, the key with
    the largest memo is dropped (unknown), which frees its memo for the others.
    """
    live: dict[int, list[Any]] = {j: [search_steps(m, budget.max_states), 0.0, (0, 0, 0)]
                                  for j, m in enumerate(models)}
    results: dict[int, KeyResult] = {}

    def drop(j: int, reason: str) -> None:
        search, spent, (states, steps, _mem) = live.pop(j)
        search.close()
        results[j] = unknown(models[j], reason, states, steps, spent)

    settled: str | None = None  # why the keys still searching need not finish
    turn = 1
    while live:
        if pause_at is not None and time.monotonic() > pause_at:
            for j in list(live):
                search, spent, _progress = live.pop(j)
                search.close()
                if paused is not None:
                    paused[j] = spent
            break
        for j in list(live):
            entry = live[j]
            started = time.perf_counter()
            try:
                for _ in range(turn):
                    entry[2] = next(entry[0])
                entry[1] += time.perf_counter() - started
            except StopIteration as done:
                res: KeyResult = done.value
                res.elapsed_s = entry[1] + time.perf_counter() - started
                del live[j]
                results[j] = res
                if res.validity is Validity.INVALID and budget.stop_at_invalid:
                    settled = settled_reason(res.key)
                    if stop is not None:
                        stop.set()
                    break
        turn = min(2 * turn, MAX_TURN)
        if settled is None and stop is not None and stop.is_set():
            settled = "not checked further: a key searched in another worker settled the verdict"
        if settled is not None:
            for j in list(live):
                drop(j, settled)
            break
        if not live:
            break
        total = sum(entry[2][2] for entry in live.values())
        biggest = max(live, key=lambda j: live[j][2][2])
        states, _steps, mem = live[biggest][2]
        reason = budget_reason(models[biggest], states, total, budget.memory_bytes, budget.deadline)
        if reason is None:
            continue
        if reason.startswith("memory"):
            drop(biggest, reason)
        else:
            for j in list(live):
                drop(j, budget_reason(models[j], live[j][2][0], 0, budget.memory_bytes, budget.deadline)
                     or reason)
    return results


def worker_count(requested: int | None) -> int:
    """All cores this process may use, unless told otherwise."""
    if requested is not None:
        return max(1, requested)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def deal(models: Sequence[KeyModel], workers: int) -> list[list[int]]:
    """Keys over workers, largest first to the least loaded (ops as the proxy for work)."""
    loads = [0] * workers
    hands: list[list[int]] = [[] for _ in range(workers)]
    for j in sorted(range(len(models)), key=lambda j: -len(models[j].ops)):
        w = loads.index(min(loads))
        hands[w].append(j)
        loads[w] += len(models[j].ops)
    return [sorted(hand, key=lambda j: len(models[j].ops)) for hand in hands if hand]


def _worker(models: list[KeyModel], budget: Budget, stop: Any, conn: Any) -> None:
    try:
        conn.send(run_keys(models, budget, stop))
    finally:
        conn.close()


def search_all(models: Sequence[KeyModel], budget: Budget, workers: int | None = None) -> dict[int, KeyResult]:
    """Search every key, in parallel when there are several cores and enough work; results by
    position in ``models``. Each of W workers gets 1/W of the memory budget. A worker that dies
    leaves its keys unknown, saying so."""
    n_workers = min(worker_count(workers), len(models))
    order = sorted(range(len(models)), key=lambda j: len(models[j].ops))
    parallel = n_workers > 1 and sum(len(m.ops) for m in models) >= PARALLEL_MIN_OPS
    paused: dict[int, float] = {}
    head = run_keys([models[j] for j in order], budget,
                    pause_at=time.monotonic() + HEAD_START_S if parallel else None, paused=paused)
    results = {order[k]: res for k, res in head.items()}
    if len(results) == len(models):
        return results
    head_start = {order[k]: spent for k, spent in paused.items()}
    left = sorted(head_start, key=lambda j: len(models[j].ops))
    n_workers = min(n_workers, len(left))
    got = _search_parallel([models[j] for j in left], budget, n_workers)
    for k, j in enumerate(left):
        res = got[k]
        res.elapsed_s += head_start[j]  # the head start's search was redone: count both
        results[j] = res
    return results


def _search_parallel(models: Sequence[KeyModel], budget: Budget, n_workers: int) -> dict[int, KeyResult]:
    """Keys dealt over ``n_workers`` processes (a single worker searches here)."""
    if n_workers <= 1:
        return run_keys(models, budget)
    # fork is the fast way to hand the models over; with other threads running it is unsafe, so
    # then a fork server starts the workers (the models are pickled).
    ctx: Any = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
    stop = ctx.Event()
    share = Budget(budget.deadline, budget.memory_bytes // n_workers, budget.max_states, budget.stop_at_invalid)
    running = []
    forked = time.monotonic()
    for hand in deal(models, n_workers):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=([models[j] for j in hand], share, stop, child), daemon=True)
        proc.start()
        child.close()
        running.append((hand, parent, proc))
    results: dict[int, KeyResult] = {}
    for hand, parent, proc in running:
        got: dict[int, KeyResult] | None = None
        # Workers watch the deadline themselves; the grace covers one turn and the answer's trip.
        if parent.poll(max(0.0, budget.deadline - time.monotonic()) + STOP_GRACE_S):
            try:
                got = parent.recv()
            except EOFError:
                got = None
        late = got is None and proc.exitcode is None  # still searching past the deadline: stop it
        if got is None:
            proc.kill()
        proc.join()
        spent = time.monotonic() - forked
        for k, j in enumerate(hand):
            if got is not None:
                results[j] = got[k]
            elif late:
                # Its keys shared the worker's time; each is charged all of it (an upper bound).
                results[j] = unknown(models[j], f"time limit reached on key {models[j].key!r} (its worker "
                                                f"was stopped at the deadline)", elapsed_s=spent)
            else:
                results[j] = unknown(models[j], f"worker searching key {models[j].key!r} died "
                                                f"(exit {proc.exitcode})", elapsed_s=spent)
    return results
