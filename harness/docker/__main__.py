"""``python -m harness.docker [setup|clean]``: make the daemon answer and build the images, or remove leftovers.

Exit codes: 0 ready / cleaned, 1 clean left errors, 2 setup failed (e.g. an image build), 3 no daemon
answers and none can be started here (not root, no apt): the Docker tests then skip with that reason.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from harness.docker.daemon import DockerUnavailable
from harness.docker.ready import EXIT_NO_DAEMON
from harness.errors import SetupError

__all__ = ["EXIT_NO_DAEMON", "clean", "main", "setup"]


# Where Debian's etcd-server puts etcd (what harness.systems.etcd runs first), else $PATH's.
ETCD_PATHS = (Path("/usr/bin/etcd"), Path("/usr/local/bin/etcd"))


def setup(console: Console) -> int:
    """Ensure the daemon (installing docker.io as root) and the three images, plus the etcd image
    where this machine has etcd (``make etcd-setup``); idempotent."""
    from harness.docker.images import ensure_host_binary_image
    from harness.docker.ready import ensure_ready

    started = time.monotonic()
    client, images = ensure_ready(console)
    etcd = host_etcd()
    etcd_image = ensure_host_binary_image(client, None, images.base, etcd) if etcd is not None else None
    version = client.version().get("Version", "?")
    client.close()
    console.print(f"docker {version} answers; images ready in {time.monotonic() - started:.1f} s:")
    for role in ("base", "node", "toxiproxy"):
        console.print(f"  {role:<9} {getattr(images, role)}")
    if etcd is None:
        console.print("  etcd      not installed here (`make etcd-setup`): etcd runs on no backend")
    else:
        console.print(f"  etcd      {etcd_image} ({etcd}, {binary_version(etcd)})")
    return 0


def host_etcd() -> Path | None:
    """The etcd binary the etcd image is built from, or None."""
    for path in ETCD_PATHS:
        if path.is_file():
            return path
    found = shutil.which("etcd")
    return Path(found) if found else None


def binary_version(binary: Path) -> str:
    """The first line ``binary --version`` prints (``etcd Version: 3.4.23``), or ``version unknown``."""
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else "version unknown"


def clean(console: Console, include_live: bool) -> int:
    """Remove labelled Docker leftovers and local processes of dead runs (``raftchaos clean``)."""
    from harness.cleanup import clean_everything

    report = clean_everything(include_live=include_live)
    for line in report.lines():
        console.print(line)
    return 1 if report.errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.docker", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("setup", help="start dockerd if needed and build the images (default)")
    cleaner = sub.add_parser("clean", help="remove labelled leftovers of dead runs")
    cleaner.add_argument("--all", action="store_true", help="also remove resources of live runs")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    try:
        if args.command == "clean":
            return clean(console, args.all)
        return setup(console)
    except DockerUnavailable as exc:
        console.print(f"[yellow]docker unavailable:[/yellow] {exc.message}", highlight=False)
        return EXIT_NO_DAEMON
    except SetupError as exc:
        console.print(f"[red]error:[/red] {exc.message}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
