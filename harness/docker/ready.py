"""Make the daemon answer and the images exist, with rich progress: ``python -m harness.docker setup`` and
``raftchaos ... --backend docker`` share this."""

from __future__ import annotations

import docker
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from harness.docker.daemon import ensure_daemon
from harness.docker.images import Images, ensure_images

__all__ = ["EXIT_NO_DAEMON", "ensure_ready"]

EXIT_NO_DAEMON = 3  # no daemon answers and none can be started here: Docker tests skip, not fail


def ensure_ready(console: Console) -> tuple[docker.DockerClient, Images]:
    """A client for an answering daemon (installing docker.io as root) and the three images; idempotent.

    Raises DockerUnavailable when no daemon can be made to answer, SetupError when e.g. a build fails.
    """
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        client = ensure_daemon(progress)
        try:
            images = ensure_images(client, progress)
        except BaseException:
            client.close()
            raise
    return client, images
