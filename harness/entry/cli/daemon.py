"""The detached supervisor ``raftchaos up`` starts: owns one Cluster, serves a loopback control API, writes the state.

``python -m harness.entry.cli.daemon --spec SPEC.json --plan PLAN.json --state STATE.json``. It starts
the cluster through ``harness.run.Run`` (observer, optional crash supervisor, run.json), the
optional workload and scenario timeline, then
serves on 127.0.0.1 (ephemeral port): ``GET /state``, ``GET /faults`` (open faults),
``POST /faults`` ``{"name", "params", "for_s"}``, ``POST /faults/heal`` ``{"slot"}`` or
``{"all": true}``, ``POST /down``. SIGTERM, SIGINT and SIGHUP stop it like ``/down``: heal
everything, final reads, verdicts, stop the cluster, remove the state file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from faults.catalog import build_fault
from faults.nemesis import Nemesis
from harness.cluster import Cluster
from harness.entry.cli.state import write_state
from harness.errors import HarnessError
from harness.run import Run
from harness.runplan import RunPlan, plan_from_info
from harness.schedule import FaultSpec, Step, StepOp, step_from_dict
from harness.spec import ClusterSpec
from harness.sweep import owner_token
from harness.workload import Workload


class Daemon:
    """The cluster, its nemesis (steps of a scenario plus faults added over the API) and the API."""

    def __init__(self, cluster: Cluster, plan: RunPlan, state: Path) -> None:
        self.cluster = cluster
        self.plan = plan
        self.state = state
        self.stop = threading.Event()
        self.nemesis = Nemesis(cluster, plan.steps)
        self.timers: list[threading.Timer] = []
        self.server: ThreadingHTTPServer | None = None

    def state_doc(self, status: str) -> dict[str, Any]:
        c, backend = self.cluster, self.cluster.backend
        cluster_file = json.loads(c.run.cluster_file.read_text()) if c.run.cluster_file.exists() else {}
        nodes = {}
        for n in c.nodes:
            pid = getattr(backend, "pid", lambda _n: None)(n)
            nodes[n] = {"http": backend.node_http_url(n), "client": backend.client_url(n),
                        "rpc": (cluster_file.get("nodes", {}).get(n) or {}).get("rpc"), "pid": pid,
                        "running": c.is_running(n), "paused": c.is_paused(n)}
        return {"status": status, "pid": self.pid, "owner": owner_token(), "run_id": c.run_id,
                "run_dir": str(c.run_dir.resolve()), "seed": c.spec.seed, "spec": c.spec.to_dict(),
                "control": self.control_url, "toxiproxy": backend.toxiproxy_api_url,
                "nodes": nodes, "proxies": {p.name: p.listen for p in backend.proxy_configs()}}

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def control_url(self) -> str | None:
        if self.server is None:
            return None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    # ---- API actions ----------------------------------------------------------------------------

    def add_fault(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name, params = body.get("name"), body.get("params") or {}
        try:
            spec = FaultSpec(str(name), dict(params))
            fault = build_fault(spec.name, spec.params)
            reason = fault.available(self.cluster)
        except HarnessError as exc:
            return 400, {"error": str(exc).splitlines()[0]}
        if reason:
            return 400, {"error": f"fault {name} is not available for system {self.cluster.spec.system}: {reason}"}
        slot = self.nemesis.next_slot()
        line = self.nemesis.apply(Step(self.nemesis.now_s(), StepOp.INJECT, slot, spec))
        if "error" in line or "skipped" in line:
            return 400, {"error": f"fault {name}: {line.get('error') or line.get('skipped')}"}
        for_s = body.get("for_s")
        if isinstance(for_s, int | float) and for_s > 0:
            timer = threading.Timer(float(for_s), self.heal, args=(slot,))
            timer.daemon = True
            timer.start()
            self.timers.append(timer)
        return 200, line

    def heal(self, slot: int | None) -> dict[str, Any]:
        open_slots = sorted(self.nemesis.open_faults())
        if slot is None:
            return self.nemesis.apply(Step(self.nemesis.now_s(), StepOp.HEAL_ALL, self.nemesis.next_slot(), None))
        if slot not in open_slots:
            raise KeyError(slot)
        return self.nemesis.apply(Step(self.nemesis.now_s(), StepOp.HEAL, slot, None))

    def faults(self) -> list[dict[str, Any]]:
        out = []
        for slot, fault in sorted(self.nemesis.open_faults().items()):
            line = next((x for x in self.nemesis.executed if x.get("slot") == slot and x.get("op") == "inject"), {})
            out.append({"slot": slot, "fault": fault.name, "params": line.get("params"),
                        "targets": line.get("targets"), "term": line.get("term"), "at_s": line.get("at_s")})
        return out

    # ---- lifecycle ------------------------------------------------------------------------------

    def serve(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, name="control", daemon=True).start()
        if self.plan.steps:
            threading.Thread(target=self.nemesis.run, name="nemesis", daemon=True).start()
        else:
            self.nemesis.begin()
        write_state(self.state_doc("ready"), self.state)
        self.stop.wait()

    def finish(self) -> None:
        """Stop serving and the nemesis, and heal what it opened (the run's own final heal,
        reads and verdicts follow in ``Run.finish``)."""
        for timer in self.timers:
            timer.cancel()
        if self.server is not None:
            self.server.shutdown()
        self.nemesis.stop()
        self.nemesis.final_heal()


def _handler(daemon: Daemon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _send(self, code: int, doc: Any) -> None:
            body = json.dumps(doc, default=str).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                doc = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return {}
            return doc if isinstance(doc, dict) else {}

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/state":
                self._send(200, daemon.state_doc("ready"))
            elif self.path == "/faults":
                self._send(200, {"faults": daemon.faults()})
            else:
                self._send(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            try:
                if self.path == "/faults":
                    self._send(*daemon.add_fault(body))
                elif self.path == "/faults/heal":
                    slot = None if body.get("all") else int(body.get("slot", -1))
                    self._send(200, daemon.heal(slot))
                elif self.path == "/down":
                    self._send(200, {"run_dir": str(daemon.cluster.run_dir)})
                    daemon.stop.set()
                else:
                    self._send(404, {"error": f"no such path {self.path}"})
            except KeyError as exc:
                self._send(400, {"error": f"no open fault in slot {exc.args[0]} (see: raftchaos fault list)"})
            except (HarnessError, ValueError) as exc:
                self._send(500, {"error": str(exc).splitlines()[0]})
    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raftchaos-daemon")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)
    spec = ClusterSpec.from_json(args.spec.read_text())
    info = json.loads(args.plan.read_text())
    plan = plan_from_info(info, [step_from_dict(d) for d in info.get("steps", [])], spec.test_name)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    daemon: Daemon | None = None
    try:
        with Run.for_plan(spec, plan, runs_root=info.get("runs_root")) as run:
            daemon = served = Daemon(run.cluster, plan, args.state)
            served.stop = stop
            if plan.workload.enabled:
                run.track(Workload(run.cluster, plan.workload_spec()).start())
            try:
                served.serve()
            except KeyboardInterrupt:
                pass
            finally:
                run.end()
                served.finish()
            run.finish(lambda _events, _verdicts: {"schedule_steps": len(served.nemesis.executed)},
                       errors=served.nemesis.errors)
        return 0
    except BaseException as exc:  # noqa: BLE001 - reported through the state file, then re-raised
        if daemon is None or daemon.server is None:
            write_state({"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                         "owner": owner_token()}, args.state)
        if isinstance(exc, KeyboardInterrupt):
            return 130
        raise
    finally:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(args.state.read_text()).get("status") == "ready":
                args.state.unlink()
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
