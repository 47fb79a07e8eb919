"""The import-linter contracts catch what they are there to catch (issue #13: "catch a planted
system-specific import in faults/"): each case copies the packages, plants one import that breaks a
layer, and runs the real `lint-imports` over the project's own contracts (pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("nodes", "harness", "faults", "reports", "suites")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _copy(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="lint-imports is not installed in this environment")
@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("faults/base.py", "import harness.systems.kuduraft", "faults, reports and suites know no particular system"),
    ("faults/base.py", "from harness.systems.etcd import gateway", "system adapters are reached only through"),
    ("harness/cluster.py", "import faults.base", "the harness core imports no layer above it"),
    ("harness/cluster.py", "from harness.systems.kuduraft.client import NodeClient",
     "system adapters are reached only through"),
    ("reports/summary.py", "import faults.base", "layers: the entry points above faults and reports"),
    ("faults/base.py", "import harness.entry.plugin", "layers: the entry points above faults and reports"),
    ("suites/_helpers.py", "import nodes.flags", "suites use the public harness API"),
    ("harness/spec.py", "import nodes.flags", "only the kuduraft adapter reads the node's code"),
    ("faults/base.py", "import harness.local", "faults do not orchestrate runs"),
    ("faults/base.py", "import harness.run", "faults do not orchestrate runs"),
])  # fmt: skip
def test_planted_import_breaks_its_contract(tmp_path: Path, module: str, planted: str, contract: str) -> None:
    _copy(tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{planted}  # planted by the test\n", encoding="utf-8")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="lint-imports is not installed in this environment")
def test_the_unplanted_copy_keeps_every_contract(tmp_path: Path) -> None:
    """The cases above would prove nothing if the copy broke the contracts by itself."""
    _copy(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
