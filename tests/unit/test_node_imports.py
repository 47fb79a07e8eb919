"""The node must build offline from the standard library alone: no third-party import in nodes/."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

NODES = Path(__file__).resolve().parents[2] / "nodes"


def test_nodes_import_only_the_standard_library() -> None:
    offenders = []
    for path in sorted(NODES.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "nodes" and top not in sys.stdlib_module_names and top != "__future__":
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, f"non-stdlib imports in nodes/: {offenders}"
