"""Run ownership tokens and process labels used to sweep killed runs' leftovers."""

from __future__ import annotations

import os

from harness.sweep import OWNER_ENV, RUN_ENV, labelled_env, owner_alive, owner_token, process_alive


def test_own_token_is_alive_and_forged_tokens_are_not() -> None:
    token = owner_token()
    assert owner_alive(token)
    pid, _, ticks = token.partition(":")
    assert not owner_alive(f"{pid}:{int(ticks) + 1}")  # same pid, other process (pid reuse)
    assert not owner_alive("not-a-pid")
    assert process_alive(os.getpid())


def test_labelled_env_carries_run_and_owner() -> None:
    env = labelled_env("run-1", {"PATH": "/bin"})
    assert env == {"PATH": "/bin", RUN_ENV: "run-1", OWNER_ENV: owner_token()}
