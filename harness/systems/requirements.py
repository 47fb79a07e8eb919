"""What a test says it needs from the system under test, and the one-line reason it skips.

Two pytest markers (registered by ``harness.entry.plugin``): ``@pytest.mark.requires(Capability.X, ...)``
for a test that needs capabilities (``harness.systems.base.Capability``), and
``@pytest.mark.kuduraft_only`` (optional ``reason=``) for a test that checks kuduraft's own
behaviour (a spec item B1..B50, the node's internals) that another Raft need not share. Pure:
the plugin reads the markers and asks here; a test is skipped with the answer, never run weaker.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.errors import ConfigError
from harness.systems.base import Capability, System, skip_reason

REQUIRES = "requires"
KUDURAFT_ONLY = "kuduraft_only"
KUDURAFT_ONLY_WHY = "checks kuduraft's own behaviour (its spec items or node internals), which another Raft need not share"


def capabilities_of(args: Iterable[object]) -> list[Capability]:
    """The ``requires`` marker's arguments as capabilities (members or their names); ConfigError
    naming a value that is none, with the choices."""
    caps = []
    known = {c.value: c for c in Capability}
    for arg in args:
        if not isinstance(arg, str) or arg not in known:  # a Capability is a str of its value
            choices = ", ".join(known)
            raise ConfigError(f"requires: {arg!r} is not a capability (choose from {choices})")
        caps.append(known[arg])
    return caps


def requirement_skip(system: System, backend: str, required: Iterable[Capability],
                     kuduraft_only: bool = False, only_reason: str | None = None) -> str | None:
    """Why a test with these markers must skip on ``system``/``backend``, or None when it runs."""
    if kuduraft_only and system.name != "kuduraft":
        return f"kuduraft_only: {only_reason or KUDURAFT_ONLY_WHY} (running {system.name})"
    return skip_reason(system, backend, required)
