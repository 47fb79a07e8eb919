"""pytest plugin: the composition root that wires the harness into pytest (options, fixtures, report)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raftchaos")
    group.addoption("--backend", default="local", choices=["local", "docker"], help="where nodes run")
    group.addoption("--seed", type=int, default=None, help="run seed (default: random, printed)")
    group.addoption("--keep-runs", action="store_true", help="keep run directories of passing tests")
    group.addoption("--run-dir", default=".raftchaos/runs", help="where run directories go")
