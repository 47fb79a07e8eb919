"""Nothing outlives a Cluster: normal exit, exception, SIGINT/SIGTERM/SIGHUP to the harness; SIGKILL leftovers swept."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.cluster import Cluster
from harness.errors import HarnessError
from harness.spec import ClusterSpec
from harness.sweep import process_alive, run_processes
from harness.toxi import ToxiproxyClient

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import sys, threading
    from harness.cluster import Cluster
    from harness.spec import ClusterSpec
    spec = ClusterSpec(node_count=3, seed=int(sys.argv[2]), test_name="leak_child")
    with Cluster(spec, runs_root=sys.argv[1]) as c:
        c.wait_for_leader()
        print(c.run_id, c.backend.toxiproxy_api_url, flush=True)
        threading.Event().wait()
""")


def assert_nothing_left(run_id: str, api_url: str) -> None:
    assert run_processes(run_id) == []
    with pytest.raises(HarnessError):  # the server (and so every proxy) is gone
        ToxiproxyClient(api_url, timeout_s=1.0).proxies()


def test_normal_exit_leaves_nothing(runs_root: Path, seed: int) -> None:
    with Cluster(ClusterSpec(seed=seed, test_name="leak_normal"), runs_root=runs_root) as c:
        pids = run_processes(c.run_id)
        assert len(pids) == 4  # three nodes and the toxiproxy server
        api = c.backend.toxiproxy_api_url
        assert len(ToxiproxyClient(api).proxies()) == 3 * 2 + 3
    assert_nothing_left(c.run_id, api)


def test_exception_leaves_nothing(runs_root: Path, seed: int) -> None:
    with pytest.raises(RuntimeError, match="suite bug"), \
            Cluster(ClusterSpec(seed=seed, test_name="leak_exc"), runs_root=runs_root) as c:
        api = c.backend.toxiproxy_api_url
        raise RuntimeError("suite bug")
    assert_nothing_left(c.run_id, api)


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@contextmanager
def child_cluster(runs_root: Path, seed: int) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """A child python process running a cluster; yields it once its leader is elected."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # The child starts as from an interactive shell: default dispositions. Run from `nohup` or a
    # background job, this process inherits SIGHUP/SIGINT ignored, and the harness rightly keeps
    # an ignored signal ignored, so the child would never see the signal the test sends.
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(runs_root), str(seed)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=60), "child cluster did not come up in 60 s"
        line = proc.stdout.readline().split()
        assert len(line) == 2, f"child exited early (code {proc.poll()})"
        yield proc, line[0], line[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_sigint_to_the_harness_leaves_nothing(runs_root: Path, seed: int) -> None:
    with child_cluster(runs_root, seed) as (proc, run_id, api):
        assert len(run_processes(run_id)) == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) != 0  # KeyboardInterrupt propagated after cleanup
    assert_nothing_left(run_id, api)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_to_the_harness_leaves_nothing(runs_root: Path, seed: int, signum: int) -> None:
    with child_cluster(runs_root, seed) as (proc, run_id, api):
        assert len(run_processes(run_id)) == 4
        proc.send_signal(signum)
        code = proc.wait(30)
        # The exit guard turned the signal into KeyboardInterrupt: the `with Cluster` block unwound
        # (exit by SIGINT's default action after the traceback), rather than dying of the signal.
        assert code not in (0, -signum), code
    assert_nothing_left(run_id, api)


def test_sigkilled_harness_is_swept_by_the_next_start(runs_root: Path, seed: int) -> None:
    with child_cluster(runs_root, seed) as (proc, run_id, api):
        proc.kill()
        proc.wait(30)
        leftovers = run_processes(run_id)
        assert len(leftovers) == 4  # nobody cleaned up: nodes and server are orphans now
    with Cluster(ClusterSpec(node_count=1, seed=seed, test_name="sweeper"), runs_root=runs_root):
        assert run_processes(run_id) == []
        assert not any(process_alive(pid) for pid in leftovers)
    assert_nothing_left(run_id, api)
