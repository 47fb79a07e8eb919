"""The mutation benchmark's model: Cosmic Ray's mutants of a module, the equivalents file, outcomes and the score.

``benchmarks/mutation.py`` (the runner and its command line) explains the measure; this module
holds what can be checked without running anything, so the unit tests cover it directly.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

OUTCOMES = ("killed", "timeout", "survived", "flaky", "error")


class BadInput(Exception):
    """A bad argument or equivalents file: one line naming it and the problem."""


@dataclass(frozen=True)
class Mutant:
    """One mutation: Cosmic Ray's (module, operator, occurrence) plus where and what it changes."""

    module: str
    operator: str
    occurrence: int
    line: int
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def ident(self) -> str:
        return f"{self.module}:{self.operator}#{self.occurrence}"

    @property
    def fingerprint(self) -> str:
        """Stable across edits elsewhere in the module: the changed lines' text, not their numbers."""
        text = "\n".join([self.module, self.operator, *("-" + r for r in self.removed), *("+" + a for a in self.added)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def change(self) -> str:
        return " / ".join([*("- " + r for r in self.removed), *("+ " + a for a in self.added)])


@dataclass
class Result:
    mutant: Mutant
    outcome: str
    wall_s: float
    exit_status: int | None
    log: str


# ---- enumeration --------------------------------------------------------------------------------


def _operators() -> list[tuple[str, Any]]:
    """Every Cosmic Ray operator that takes no arguments (the parametrised ones need a config)."""
    import cosmic_ray.plugins  # type: ignore[import-untyped]

    out = []
    for name in cosmic_ray.plugins.operator_names():
        cls = cosmic_ray.plugins.get_operator(name)
        if not cls.arguments():
            out.append((name, cls()))
    return out


def enumerate_mutants(module: str, source: str) -> list[Mutant]:
    """Every (operator, occurrence) of ``source``, in Cosmic Ray's order (its ``init`` command's)."""
    from cosmic_ray.ast import ast_nodes, get_ast  # type: ignore[import-untyped]

    tree = get_ast(source)
    mutants: list[Mutant] = []
    for name, operator in _operators():
        positions = (start for node in ast_nodes(tree) for start, _ in operator.mutation_positions(node))
        mutants.extend(Mutant(module, name, occurrence, start[0]) for occurrence, start in enumerate(positions))
    return mutants


def sample(mutants: Sequence[Mutant], max_mutants: int | None, seed: int) -> list[Mutant]:
    """A seeded sample (all when ``max_mutants`` is None or not smaller), in module/line order."""
    chosen = list(mutants) if max_mutants is None or max_mutants >= len(mutants) else \
        random.Random(seed).sample(list(mutants), max_mutants)
    return sorted(chosen, key=lambda m: (m.module, m.line, m.operator, m.occurrence))


def mutated_source(source: str, mutant: Mutant) -> str | None:
    import cosmic_ray.plugins
    from cosmic_ray.mutating import mutate_code  # type: ignore[import-untyped]

    mutated: str | None = mutate_code(source, cosmic_ray.plugins.get_operator(mutant.operator)(), mutant.occurrence)
    return mutated


def describe(mutant: Mutant, original: str, mutated: str) -> Mutant:
    """The mutant with the stripped text of the lines it removes and adds."""
    removed: list[str] = []
    added: list[str] = []
    for line in difflib.unified_diff(original.splitlines(), mutated.splitlines(), lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        (removed if line.startswith("-") else added).append(line[1:].strip())
    return Mutant(mutant.module, mutant.operator, mutant.occurrence, mutant.line, tuple(removed), tuple(added))


# ---- equivalents --------------------------------------------------------------------------------


def load_equivalents(path: Path) -> dict[str, str]:
    """fingerprint -> reason from the equivalents file (absent file: none)."""
    if not path.exists():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: {exc}") from None
    unknown = set(doc) - {"equivalent"}
    if unknown:
        raise BadInput(f"{path}: unknown key {sorted(unknown)[0]!r} (only [[equivalent]] tables)")
    entries = doc.get("equivalent", [])
    if not isinstance(entries, list):
        raise BadInput(f"{path}: 'equivalent' must be an array of tables ([[equivalent]])")
    out: dict[str, str] = {}
    for index, entry in enumerate(entries, 1):
        where = f"{path}: equivalent #{index}"
        if not isinstance(entry, dict) or set(entry) - {"module", "fingerprint", "reason", "change"}:
            raise BadInput(f"{where}: keys are module, fingerprint, reason (and an optional change)")
        for key in ("module", "fingerprint", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise BadInput(f"{where}: {key} must be a non-empty string")
        if entry["fingerprint"] in out:
            raise BadInput(f"{where}: fingerprint {entry['fingerprint']} listed twice")
        out[entry["fingerprint"]] = entry["reason"].strip()
    return out


# ---- outcomes and the score ---------------------------------------------------------------------


def outcome_of(exit_status: int | None, timed_out: bool) -> str:
    """pytest's exit status as the mutant's fate (see the module docstring)."""
    if timed_out:
        return "timeout"
    return {0: "survived", 1: "killed"}.get(exit_status if exit_status is not None else -1, "error")


@dataclass
class ModuleScore:
    module: str
    counts: dict[str, int]
    equivalent: int

    @property
    def detected(self) -> int:
        return self.counts["killed"] + self.counts["timeout"]

    @property
    def scored(self) -> int:
        return self.detected + self.counts["survived"] - self.equivalent

    @property
    def score(self) -> float | None:
        return self.detected / self.scored if self.scored else None


def scores(results: Iterable[Result], equivalents: Mapping[str, str]) -> dict[str, ModuleScore]:
    """Per module and ``total``: outcome counts, equivalent survivors and the score."""
    out: dict[str, ModuleScore] = {}
    for result in results:
        for key in (result.mutant.module, "total"):
            entry = out.setdefault(key, ModuleScore(key, dict.fromkeys(OUTCOMES, 0), 0))
            entry.counts[result.outcome] += 1
            if result.outcome == "survived" and result.mutant.fingerprint in equivalents:
                entry.equivalent += 1
    if "total" in out:
        out["total"] = out.pop("total")  # last
    return out


def score_table(module_scores: Mapping[str, ModuleScore]) -> Table:
    table = Table(title="mutation score (killed + timeout) / (killed + timeout + survived - equivalent)")
    for column in ("module", *OUTCOMES, "equivalent", "score"):
        table.add_column(column, justify="left" if column == "module" else "right")
    for entry in module_scores.values():
        score = "-" if entry.score is None else f"{100 * entry.score:.1f} %"
        table.add_row(entry.module, *(str(entry.counts[k]) for k in OUTCOMES), str(entry.equivalent), score)
    return table


def survivor_table(results: Iterable[Result], equivalents: Mapping[str, str]) -> Table:
    table = Table(title="survivors by module (equivalent ones with the reason)", show_lines=True)
    for column in ("module:line", "operator", "change", "fingerprint", "equivalent?"):
        table.add_column(column, overflow="fold")
    for r in sorted((r for r in results if r.outcome == "survived"), key=lambda r: (r.mutant.module, r.mutant.line)):
        m = r.mutant
        table.add_row(f"{m.module}:{m.line}", m.operator.removeprefix("core/"), escape(m.change()), m.fingerprint,
                      escape(equivalents.get(m.fingerprint, "no: a weak spot")))
    return table


def load_results(path: Path) -> list[Result]:
    """The results of an earlier run (its ``results.json``), to re-score with a newer equivalents file."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for r in doc["results"]:
            m = r["mutant"]
            mutant = Mutant(str(m["module"]), str(m["operator"]), int(m["occurrence"]), int(m["line"]),
                            tuple(m["removed"]), tuple(m["added"]))
            out.append(Result(mutant, str(r["outcome"]), float(r["wall_s"]), r["exit_status"], str(r["log"])))
        return out
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a results.json of benchmarks/mutation.py ({type(exc).__name__}: {exc})") from None


def write_results(path: Path, results: Sequence[Result], meta: Mapping[str, Any]) -> None:
    """``results.json``, rewritten after every mutant so a stopped run keeps what it measured."""
    doc = {**meta, "results": [{**asdict(r), "mutant": {**asdict(r.mutant), "fingerprint": r.mutant.fingerprint}}
                               for r in results]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    tmp.replace(path)
