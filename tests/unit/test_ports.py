"""harness/ports.py: ports are chosen below the ephemeral range and reserved machine-wide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import ports


def test_ports_handed_out_are_not_handed_out_again_while_reserved(tmp_path: Path, monkeypatch: Any) -> None:
    """Two callers probing at the same moment (two runs, or one run's Toxiproxy API port and its
    proxy ports) must not get the same port before either binds it: free_ports remembers what it
    handed out in a machine-wide table (the "address already in use" at /populate flake)."""
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "ports.json")
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (ports.PORT_FLOOR + 400, 60999))
    first = ports.free_ports(20)
    second = ports.free_ports(20)
    assert len(set(first)) == 20 and not set(first) & set(second)
    assert all(ports.PORT_FLOOR <= p < ports.PORT_FLOOR + 400 for p in first + second)
    reserved = set(json.loads((tmp_path / "ports.json").read_text()))
    assert {str(p) for p in first + second} <= reserved
