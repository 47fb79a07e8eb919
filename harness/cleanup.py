"""``raftchaos clean``: remove every leftover a run could leave (Docker resources, local node/Toxiproxy
processes, run directories of killed runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.sweep import Labelled, sweep_dead

__all__ = ["CleanReport", "clean_everything"]


@dataclass
class CleanReport:
    """What a clean removed; ``errors`` lists what it could not (each a line naming the resource)."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    processes: list[Labelled] = field(default_factory=list)
    removed_dirs: list[Path] = field(default_factory=list)
    kept_dirs: list[tuple[Path, str]] = field(default_factory=list)
    docker_note: str | None = None  # why Docker was not cleaned (no daemon answers), if it was not
    errors: list[str] = field(default_factory=list)

    @property
    def removed(self) -> int:
        return len(self.containers) + len(self.networks) + len(self.volumes) + len(self.processes)

    def lines(self) -> list[str]:
        """A short human summary, one line per kind of resource."""
        out = [f"{kind}: {', '.join(names) if names else 'none'}"
               for kind, names in (("containers", self.containers), ("networks", self.networks),
                                   ("volumes", self.volumes))]  # fmt: skip
        if self.docker_note:
            out = [f"docker: {self.docker_note}"]
        procs = ", ".join(f"{p.pid} (run {p.run_id})" for p in self.processes) or "none"
        out.append(f"local processes of dead runs: {procs}")
        out.append(f"run directories of dead runs removed: {len(self.removed_dirs)}")
        out += [f"kept {path}: {why} (raftchaos clean --all removes it)" for path, why in self.kept_dirs]
        out += [f"error: {e}" for e in self.errors]
        return out


def clean_everything(include_live: bool = False) -> CleanReport:
    """Remove labelled Docker containers, networks and volumes, kill local processes of dead runs
    and remove their run directories (``harness.sweep.sweep_dead``: a failure worth keeping stays
    unless ``include_live``, i.e. ``--all``).

    Docker: without ``include_live``, only resources whose owning harness process is gone (what
    every start sweeps anyway); with it, every ``raftchaos.run``-labelled resource, live runs
    included (use when the owner cannot be checked, e.g. it ran on another host). Each container's
    log is saved into its run directory first. Does not start a Docker daemon: when none answers,
    there is nothing running to remove and ``docker_note`` says so. Never raises for one resource.
    """
    swept_local = sweep_dead(keep_failures=not include_live)
    report = CleanReport(processes=swept_local.processes, removed_dirs=swept_local.removed_dirs,
                         kept_dirs=swept_local.kept_dirs)
    try:
        from harness.docker.daemon import client_if_answering
        from harness.docker.resources import sweep
    except ImportError as exc:  # the docker SDK is a dependency; a broken install should not stop clean
        report.docker_note = f"not cleaned: {exc}"
        return report
    client = client_if_answering()
    if client is None:
        report.docker_note = "no daemon answers: nothing to remove"
        return report
    try:
        swept = sweep(client, only_dead=not include_live)
    finally:
        client.close()
    report.containers, report.networks, report.volumes = swept.containers, swept.networks, swept.volumes
    report.errors.extend(swept.errors)
    return report
