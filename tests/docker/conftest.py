"""Docker tests: skipped with the reason (never an error) when no daemon answers and none can be started."""

from __future__ import annotations

import os
import random

import pytest

from harness.docker.daemon import unavailable_reason

SEED = int(os.environ.get("RAFTCHAOS_TEST_SEED") or random.SystemRandom().randrange(2**31))


@pytest.fixture(scope="session", autouse=True)
def docker_daemon() -> None:
    """Make a daemon answer (as root this installs docker.io and starts dockerd), else skip."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def seed() -> int:
    """The test's seed (``RAFTCHAOS_TEST_SEED`` replays one), printed."""
    print(f"raftchaos seed={SEED} (replay with RAFTCHAOS_TEST_SEED={SEED})")
    return SEED
