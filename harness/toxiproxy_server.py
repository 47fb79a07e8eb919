"""Find and run the real Toxiproxy server: one per cluster, on 127.0.0.1 and a free port."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from harness.errors import SetupError, ToxiproxyError
from harness.ports import free_port
from harness.toxi import ToxiproxyClient
from harness.waits import WaitStrategy, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_ENV = "TOXIPROXY_SERVER"
INSTALL_HINT = ("toxiproxy-server not found: run `make setup` (installs Toxiproxy v2.12.0 into .bin/), "
                f"or set {SERVER_ENV} to the binary")


def find_server_binary(repo_root: Path = REPO_ROOT) -> Path:
    """``$TOXIPROXY_SERVER``, then ``<repo>/.bin/toxiproxy-server``, then ``toxiproxy-server`` on PATH."""
    env = os.environ.get(SERVER_ENV)
    if env:
        if os.access(env, os.X_OK):
            return Path(env)
        raise SetupError(f"{SERVER_ENV}={env} is not an executable file; {INSTALL_HINT}")
    local = repo_root / ".bin" / "toxiproxy-server"
    if os.access(local, os.X_OK):
        return local
    found = shutil.which("toxiproxy-server")
    if found:
        return Path(found)
    raise SetupError(INSTALL_HINT)


class ToxiproxyServer:
    """One ``toxiproxy-server`` process on 127.0.0.1 (never all interfaces), logging to a file.

    ``start()`` returns once ``GET /version`` answers (bounded by ``start_timeout_s``), else raises
    SetupError with the server's last log lines. ``stop()`` is idempotent. ``env`` is the full
    environment of the process (the backend passes one labelled with the run id).
    """

    HOST = "127.0.0.1"

    def __init__(self, log_path: Path, seed: int = 0, env: dict[str, str] | None = None,
                 binary: Path | None = None, start_timeout_s: float = 10.0) -> None:
        self.log_path = Path(log_path)
        self.seed = seed
        self.env = env
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        if self.port is None:
            raise ToxiproxyError("toxiproxy server not started")
        return f"http://{self.HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, attempts: int = 3) -> ToxiproxyClient:
        """Start the server (retrying on a port taken between choosing and binding it)."""
        binary = self.binary or find_server_binary()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        last: SetupError | None = None
        for _ in range(attempts):
            self.port = free_port(self.HOST)
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [str(binary), "-host", self.HOST, "-port", str(self.port), "-seed", str(self.seed),
                     "-proxy-metrics"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=self.env, start_new_session=True)
            client = ToxiproxyClient(self.api_url, timeout_s=1.0)
            try:
                wait_until(self._answers(client), what=f"toxiproxy API at {self.api_url}",
                           strategy=WaitStrategy(self.start_timeout_s, poll_s=0.02))
                return ToxiproxyClient(self.api_url)
            except Exception as exc:  # noqa: BLE001 - retried, then reported with the log
                last = SetupError(f"toxiproxy-server ({binary}) did not come up: {exc}",
                                  {"toxiproxy": self.log_tail()})
                self.stop()
        assert last is not None
        raise last

    def _answers(self, client: ToxiproxyClient):  # type: ignore[no-untyped-def]
        def check() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise SetupError(f"toxiproxy-server exited with code {self.process.returncode}")
            with contextlib.suppress(ToxiproxyError):
                client.version()
                return True
            return False
        return check

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; its proxies die with it."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def __enter__(self) -> ToxiproxyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
