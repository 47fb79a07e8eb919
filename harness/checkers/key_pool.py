"""Checking many keys under one deadline and one memory budget: compiled, proved and searched in this process or dealt over worker processes.

Keys are independent registers, so they can be checked in any order and in parallel. Within a
process the searches advance in slices, round robin: a key that would search for minutes cannot
starve a key that fails in milliseconds, and once one key is found not linearizable the verdict is
settled, so (unless every key must be explained) the rest stop at once. Porcupine does the same
with one goroutine per partition and a kill channel (``checker.go``, ``checkParallel``). A long
history is dealt over the workers whole, each compiling, proving and searching its own keys: its
compilation and proofs cost as much as its search, and the workers start in milliseconds."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.checkers.history_ops import Op
from harness.checkers.key_result import KeyResult, budget_reason, unknown
from harness.checkers.kv_model import KeyModel, compile_key, find_stale_read
from harness.checkers.verdict import Validity
from harness.checkers.wgl import search_steps

# Below this many ops left to search, starting processes costs more than it saves.
PARALLEL_MIN_OPS = 1000
# From this many ops on, keys are dealt over workers before they are compiled: compiling and
# proving cost about 5 us an op each, so the workers' start (milliseconds) is soon paid back.
PARALLEL_COMPILE_MIN_OPS = 20_000
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


Group = tuple[str, list[Op]]  # one key and its ops (in invoke order)


def check_keys(groups: Sequence[Group], budget: Budget, workers: int | None = None,
               ) -> tuple[dict[int, KeyResult], list[KeyModel | None]]:
    """Check every key: results by position in ``groups``, and the compiled models (None for a key
    compiled in a worker: ``compile_key`` rebuilds the same model). A long history is dealt over
    the workers whole (see the module docstring); otherwise this process compiles and proves, and
    the search goes to workers when it is still running after a head start."""
    n_workers = min(worker_count(workers), len(groups))
    if n_workers > 1 and sum(len(ops) for _key, ops in groups) >= PARALLEL_COMPILE_MIN_OPS:
        sizes = [len(ops) for _key, ops in groups]
        results = _in_workers(groups, sizes, _check_hand, budget, n_workers,
                              lambda j: uncompiled(*groups[j]))
        return results, [None] * len(groups)
    return check_hand(groups, budget, workers)


def uncompiled(key: str, ops: list[Op]) -> KeyModel:
    """A key not compiled (yet): its ops alone, for an unknown verdict."""
    return KeyModel(key, ops, [], [], [], [], [], [], 0, compiled=False)


def prove(m: KeyModel) -> KeyResult | None:
    """The cheap proof of a stale read on one key (see ``find_stale_read``), or None."""
    started = time.monotonic()
    stale = find_stale_read(m)
    if stale is None:
        return None
    witness = [i for i in (stale.overwrite, stale.last_write) if i is not None]
    return KeyResult(m.key, Validity.INVALID, len(m.ops), m.pruned, elapsed_s=time.monotonic() - started,
                     stuck=stale.read, witness=witness, proved=True)


def check_hand(groups: Sequence[Group], budget: Budget, workers: int | None = None, stop: Any = None,
               ) -> tuple[dict[int, KeyResult], list[KeyModel | None]]:
    """Compile, prove and search ``groups`` from this process (the search may still go to
    ``workers``); ``stop`` is a worker's shared event (see ``run_keys``). Keys past the deadline
    end unknown without being compiled or searched."""
    models: list[KeyModel] = []
    for key, ops in groups:
        if time.monotonic() > budget.deadline:
            models.append(uncompiled(key, ops))
        else:
            models.append(compile_key(key, ops))
    results: dict[int, KeyResult] = {}
    settled: str | None = None
    # The stale-read proofs first: O(n log n) a key, and they settle most invalid histories.
    for j, m in enumerate(models):
        if time.monotonic() > budget.deadline:
            break  # the keys left end unknown below, without a search
        if stop is not None and stop.is_set():
            settled = _SETTLED_ELSEWHERE
            break
        proof = prove(m)
        if proof is not None:
            results[j] = proof
            if budget.stop_at_invalid:
                settled = settled_reason(m.key)
                if stop is not None:
                    stop.set()
                break
    todo = [j for j in range(len(models)) if j not in results]
    if settled is not None:
        results.update({j: unknown(models[j], settled) for j in todo})
    elif todo and time.monotonic() > budget.deadline:
        results.update({j: unknown(models[j], f"time limit reached before key {models[j].key!r} was "
                                              f"{'searched' if models[j].compiled else 'compiled'}")
                        for j in todo})
    elif todo:
        got = search_all([models[j] for j in todo], budget, workers, stop)
        results.update({todo[k]: res for k, res in got.items()})
    return results, list(models)


def _check_hand(groups: Sequence[Group], budget: Budget, stop: Any) -> dict[int, KeyResult]:
    """A worker's share of ``check_keys``: its keys checked in the worker alone."""
    return check_hand(groups, budget, 1, stop)[0]


_SETTLED_ELSEWHERE = "not checked further: a key searched in another worker settled the verdict"


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
            settled = _SETTLED_ELSEWHERE
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


def deal(sizes: Sequence[int], workers: int) -> list[list[int]]:
    """Keys over workers, largest first to the least loaded (ops as the proxy for work)."""
    loads = [0] * workers
    hands: list[list[int]] = [[] for _ in range(workers)]
    for j in sorted(range(len(sizes)), key=lambda j: -sizes[j]):
        w = loads.index(min(loads))
        hands[w].append(j)
        loads[w] += sizes[j]
    return [sorted(hand, key=lambda j: sizes[j]) for hand in hands if hand]


def _worker(work: Callable[[list[Any], Budget, Any], dict[int, KeyResult]], items: list[Any], budget: Budget,
            stop: Any, conn: Any) -> None:
    try:
        conn.send(work(items, budget, stop))
    finally:
        conn.close()


def _search_hand(models: list[KeyModel], budget: Budget, stop: Any) -> dict[int, KeyResult]:
    return run_keys(models, budget, stop)


def search_all(models: Sequence[KeyModel], budget: Budget, workers: int | None = None,
               stop: Any = None) -> dict[int, KeyResult]:
    """Search every key, in parallel when there are several cores and enough work; results by
    position in ``models``. Each of W workers gets 1/W of the memory budget. A worker that dies
    leaves its keys unknown, saying so. ``stop``: see ``run_keys`` (in a worker, searching alone)."""
    n_workers = min(worker_count(workers), len(models))
    order = sorted(range(len(models)), key=lambda j: len(models[j].ops))
    parallel = n_workers > 1 and sum(len(m.ops) for m in models) >= PARALLEL_MIN_OPS
    paused: dict[int, float] = {}
    head = run_keys([models[j] for j in order], budget, stop,
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
    return _in_workers(models, [len(m.ops) for m in models], _search_hand, budget, n_workers,
                       lambda j: models[j])


def _in_workers(items: Sequence[Any], sizes: Sequence[int],
                work: Callable[[list[Any], Budget, Any], dict[int, KeyResult]], budget: Budget, n_workers: int,
                model_of: Callable[[int], KeyModel]) -> dict[int, KeyResult]:
    """``work`` on ``items`` (keys, ``sizes`` their ops) dealt over ``n_workers`` processes sharing
    one stop event; results by position in ``items``. ``model_of(j)`` names item j's key for the
    unknown verdict of a worker that died or was stopped."""
    # fork is the fast way to hand the keys over; with other threads running it is unsafe, so
    # then a fork server starts the workers (the keys are pickled).
    ctx: Any = multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")
    stop = ctx.Event()
    share = Budget(budget.deadline, budget.memory_bytes // n_workers, budget.max_states, budget.stop_at_invalid)
    running = []
    forked = time.monotonic()
    for hand in deal(sizes, n_workers):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(work, [items[j] for j in hand], share, stop, child), daemon=True)
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
        late = got is None and proc.exitcode is None  # still working past the deadline: stop it
        if got is None:
            proc.kill()
        proc.join()
        spent = time.monotonic() - forked
        for k, j in enumerate(hand):
            if got is not None:
                results[j] = got[k]
                continue
            m = model_of(j)
            if late:
                # Its keys shared the worker's time; each is charged all of it (an upper bound).
                results[j] = unknown(m, f"time limit reached on key {m.key!r} (its worker "
                                        f"was stopped at the deadline)", elapsed_s=spent)
            else:
                results[j] = unknown(m, f"worker checking key {m.key!r} died (exit {proc.exitcode})",
                                     elapsed_s=spent)
    return results
