"""The self-contained HTML report of one run (report.html), and ``render_run`` that re-checks and re-renders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from reports.derive import REQUEST_KIND_LABELS, REQUEST_KINDS, Timeline, derive
from reports.plots import render_plots
from reports.recheck import recheck_verdicts, write_verdicts
from reports.run_data import RunData, load_run, overall_validity, renderer_versions
from reports.summary import build_summary, write_summary
from reports.trace import first_requests

TEMPLATES = Path(__file__).with_name("templates")
MAX_DETAIL_CHARS = 20_000  # a verdict's details beyond this are cut in the page (verdicts.json has all)
MAX_SCHEDULE_ROWS = 200
LINKED_FILES = ("events.jsonl", "spec.json", "verdicts.json", "summary.json", "cluster.json",
                "schedule.jsonl")


@dataclass(frozen=True)
class RenderResult:
    """What ``render_run`` wrote and concluded; ``overall`` is valid / invalid / unknown."""

    run_dir: Path
    report_path: Path
    summary_path: Path
    verdicts: list[dict[str, Any]]
    overall: str
    skipped_checkers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["secs"] = lambda v, digits=3: "–" if v is None else f"{v:.{digits}f}"
    env.filters["js"] = lambda v: json.dumps(v, default=str)
    return env


def _details_text(details: dict[str, Any]) -> str:
    text = json.dumps(details, indent=2, sort_keys=True, default=str)
    if len(text) > MAX_DETAIL_CHARS:
        text = text[:MAX_DETAIL_CHARS] + f"\n… cut at {MAX_DETAIL_CHARS} characters; see verdicts.json"
    return text


def _plugin_fields(data: RunData) -> dict[str, Any]:
    """Fields the pytest plugin writes beside the verdicts (test id, outcome, teardown errors)."""
    try:
        raw = json.loads(data.run.verdicts_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _window_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for w in summary["peer_request_windows"]:
        cells = []
        for part in ("before", "during", "after"):
            win = w[part]
            cells.append({"span": f"{win['start_s']:.2f}–{win['end_s']:.2f}",
                          "counts": [win["counts"][k] for k in REQUEST_KINDS],
                          "rates": [win["rates_per_s"][k] for k in REQUEST_KINDS]})
        rows.append({"fault": w["fault"], "link": w["link"], "cells": cells})
    return rows


def _pct(rate: Any) -> str:
    return "–" if not isinstance(rate, int | float) else f"{100 * rate:.0f}%"


def _ms(latency: dict[str, Any], point: str) -> str:
    value = latency.get(point)
    return "–" if not isinstance(value, int | float) else f"{value:.1f}"


def _fault_window_tables(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per fault: a row per window with success rate, latency, leader changes and, per
    peer, the requests the leader sent it (with ops / status-only / heartbeats)."""
    tables = []
    for fault in summary.get("fault_windows", []):
        windows = [(name, fault["windows"].get(name) or {}) for name in ("before", "during", "after")]
        peers = sorted({p for _, w in windows for p in w.get("peers") or {}})
        rows = []
        for name, w in windows:
            ops = w.get("ops") or {}
            latency = w.get("latency_ms") or {}
            rows.append({
                "window": name, "span": f"{w.get('start_t', 0):.2f}–{w.get('end_t', 0):.2f}",
                "ops": f"{ops.get('ok', 0)} / {ops.get('fail', 0)} / {ops.get('info', 0)}",
                "compare_failed": ops.get("compare_failed", "–"),
                "success": _pct(w.get("success_rate")), "p50": _ms(latency, "p50"),
                "p99": _ms(latency, "p99"), "leader_changes": w.get("leader_changes", "–"),
                "leaders": ", ".join(w.get("leaders") or []) or "none",
                "peer_cells": [" / ".join(str((w.get("peers") or {}).get(p, {}).get(k, "–"))
                                          for k in REQUEST_KINDS) for p in peers]})
        tables.append({"index": fault.get("index"), "fault": fault.get("fault"),
                       "t_fault": fault.get("t_fault"), "t_heal": fault.get("t_heal"),
                       "vacuous": fault.get("vacuous"), "targets": fault.get("targets") or [],
                       "peers": peers, "rows": rows})
    return tables


def build_context(data: RunData, tl: Timeline, summary: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows; plain values only, so the template stays logic-light."""
    plugin = _plugin_fields(data)
    verdicts = [{**v, "details_text": _details_text(v["details"]) if v["details"] else ""}
                for v in data.verdicts]
    files = [name for name in LINKED_FILES if (data.path / name).exists() or name == "summary.json"]
    return {
        "title": data.test_name, "run_id": data.run_id, "seed": data.seed,
        "test_id": plugin.get("test"), "outcome": plugin.get("outcome"),
        "teardown_errors": plugin.get("teardown_errors") or [],
        "overall": overall_validity(data.verdicts), "verdicts": verdicts,
        "spec": data.spec, "spec_rows": _spec_rows(data.spec),
        "versions": data.versions, "versions_recorded": data.versions_recorded,
        "renderer": renderer_versions(), "rendered_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "duration_s": tl.duration_s, "summary": summary, "plots": render_plots(tl),
        "faults": summary["faults"], "recovery": summary["recovery"],
        "kind_labels": [REQUEST_KIND_LABELS[k] for k in REQUEST_KINDS],
        "window_rows": _window_rows(summary), "resets": summary["peer_counter_resets"],
        "fault_window_tables": _fault_window_tables(summary),
        "windows_verdict": next((v for v in verdicts if v["checker"] == "windows"), None),
        "lin_windows": tl.lin, "lin_verdicts": [v for v in verdicts if v["checker"] == "linearizable"],
        "schedule": [json.dumps(e, sort_keys=True, default=str) for e in data.schedule[:MAX_SCHEDULE_ROWS]],
        "schedule_total": len(data.schedule), "logs": data.logs, "files": files,
        "problems": data.problems, "first_requests": first_requests(data.events),
        "jitter_low_ms": _jitter_low_ms(data.spec),
    }


def _jitter_low_ms(spec: dict[str, Any]) -> float | None:
    """0.75 P in ms from the run's timing (the earliest a heartbeater may first fire), or None."""
    timing = spec.get("timing") if isinstance(spec, dict) else None
    period = timing.get("heartbeat_interval_ms") if isinstance(timing, dict) else None
    return 0.75 * period if isinstance(period, int | float) and not isinstance(period, bool) else None


def _spec_rows(spec: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key in ("test_name", "node_count", "backend", "seed", "flags", "node_flags", "topology", "timing"):
        if key in spec:
            value = spec[key]
            if isinstance(value, dict):
                text = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "—"
            else:
                text = str(value)
            rows.append((key, text))
    return rows


def write_html(data: RunData, tl: Timeline, summary: dict[str, Any]) -> Path:
    """Render report.html into the run directory (atomically replaced)."""
    html = _env().get_template("report.html.j2").render(**build_context(data, tl, summary))
    path = data.run.report_path
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


def render_run(run_dir: Path | str, *, recheck: bool = True) -> RenderResult:
    """Re-render report.html and summary.json from a run directory alone; with ``recheck`` first
    re-run the checkers over the saved history and rewrite the verdicts in verdicts.json (so an old
    run is judged by today's checkers). ReportError when ``run_dir`` is not a readable run."""
    data = load_run(run_dir)
    skipped: list[str] = []
    if recheck:
        verdicts, skipped = recheck_verdicts(data.events, data.verdicts, data.path)
        write_verdicts(data, verdicts)
        data = load_run(run_dir)
    tl = derive(data.events, data.nodes, data.verdicts, data.duration_s)
    summary = build_summary(data, tl)
    summary_path = write_summary(data, tl, summary)
    report_path = write_html(data, tl, summary)
    return RenderResult(data.path, report_path, summary_path, data.verdicts,
                        overall_validity(data.verdicts), skipped, list(data.problems))


def render_for_pytest(run_dir: Path | str) -> Path:
    """For the pytest plugin's terminal summary: render the report from the verdicts the plugin just
    wrote (no re-check, which would duplicate its work) and return report.html's path."""
    return render_run(run_dir, recheck=False).report_path
