"""The exit guard's bookkeeping and its first-signal behaviour (no real signals: the handler is called)."""

from __future__ import annotations

import signal

import pytest

from harness.exitguard import ExitGuard


def test_run_all_runs_newest_first_collects_errors_and_forgets() -> None:
    guard = ExitGuard(hooks=False)  # this process's atexit hooks and signal handlers stay untouched
    calls: list[str] = []

    def broken() -> None:
        calls.append("b")
        raise RuntimeError("boom")

    guard.register("a", lambda: calls.append("a"))
    guard.register("b", broken)
    guard.register("c", lambda: calls.append("c"))
    guard.unregister("c")
    assert guard.live == ["a", "b"]
    assert guard.run_all() == ["cleaning up b: RuntimeError: boom"]
    assert calls == ["b", "a"] and guard.live == []
    assert guard.run_all() == []


def test_first_sigterm_while_a_run_is_live_unwinds_like_ctrl_c() -> None:
    guard = ExitGuard(hooks=False)
    cleaned: list[str] = []
    guard.register("run", lambda: cleaned.append("run"))
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        guard._on_signal(signal.SIGTERM, None)
    assert cleaned == [] and guard.live == ["run"]  # the unwinding `with` blocks do the cleanup
