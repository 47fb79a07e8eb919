"""The HTML report's plots: matplotlib (Agg) figures on one shared time axis, returned as inline SVG."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no external renderer: plots must render on a headless CI box

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator  # noqa: E402

from harness.history_views import DOWN, NodeSample, PeerPoint  # noqa: E402
from reports.derive import REQUEST_KIND_LABELS, REQUEST_KINDS, Timeline  # noqa: E402

# Every figure has the same width and axes margins, so stacked plots share one visual time axis.
FIG_W_IN = 13.0
LEFT, RIGHT = 0.095, 0.83
MAX_ROW_LABEL = 18  # characters of a timeline row label that fit LEFT; the full text is in the tables
OUTCOME_COLOURS = {"ok": "#2e7d32", "fail": "#ef6c00", "info": "#c62828"}
ROLE_COLOURS = {"LEADER": "#2e7d32", "FOLLOWER": "#90caf9", "CANDIDATE": "#ffb300", DOWN: "#c62828"}
KIND_COLOURS = {"requests_with_ops": "#1565c0", "status_only_requests": "#ef6c00",
                "heartbeat_sends": "#6a1b9a"}
# Heartbeats are usually status-only too, so the two lines coincide: styles keep both visible.
KIND_STYLES = {"requests_with_ops": ("-", 1.4), "status_only_requests": ("-", 2.6), "heartbeat_sends": ("--", 1.3)}
FAULT_COLOUR = "#ffcc80"
LIN_COLOUR = "#c62828"
RASTERIZE_OVER = 3000  # scatter points beyond which markers are embedded as an image (file size)
MAX_PEER_PANELS = 12
_RC: dict[str, Any] = {"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold",
       "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8, "svg.hashsalt": "raftchaos"}


@dataclass(frozen=True)
class Plot:
    """One rendered figure: an anchor id, a heading, a caption saying how to read it, the SVG."""

    id: str
    title: str
    caption: str
    svg: str


def _figure(height_in: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
    fig, axes = plt.subplots(rows, 1, figsize=(FIG_W_IN, height_in), sharex=True, squeeze=False)
    top = 1 - 0.45 / height_in
    bottom = 0.55 / height_in
    fig.subplots_adjust(left=LEFT, right=RIGHT, top=top, bottom=bottom, hspace=0.45)
    return fig, [ax for row in axes for ax in row]


def _svg(fig: Figure, prefix: str) -> str:
    """The figure as an inline ``<svg>``; ids get ``prefix`` so several plots can share one page."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE: inlined in HTML
    # Fixed pixel sizes would overflow narrow windows; the viewBox keeps the aspect ratio.
    text = re.sub(r'(id="|url\(#|href="#)', rf"\g<1>{prefix}-", text)
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 class="plot"', text, count=1)


def _shade(ax: Axes, tl: Timeline) -> None:
    for w in tl.faults:
        ax.axvspan(w.t_fault, w.end(tl.duration_s), color=FAULT_COLOUR, alpha=0.45, lw=0, zorder=0)
    for lw in tl.lin:
        ax.axvspan(lw.t_start, lw.t_end, facecolor="none", edgecolor=LIN_COLOUR, hatch="///", lw=1.0,
                   zorder=0.5)


def _shade_handles(tl: Timeline) -> list[Patch]:
    handles = []
    if tl.faults:
        handles.append(Patch(color=FAULT_COLOUR, alpha=0.45, label="fault window"))
    if tl.lin:
        handles.append(Patch(facecolor="none", edgecolor=LIN_COLOUR, hatch="///",
                             label="not linearizable"))
    return handles


def _finish(ax: Axes, tl: Timeline, handles: Sequence[object] = (), xlabel: bool = True,
            legend: bool = True) -> None:
    # A little room past the last event, so markers at the run's end (process exits) are not cut.
    ax.set_xlim(0, max(tl.duration_s, 1e-3) * 1.02)
    if xlabel:
        ax.set_xlabel("time since run start (s)")
    all_handles = list(handles) + (_shade_handles(tl) if legend else [])
    if all_handles:
        ax.legend(handles=all_handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def plot_timeline(tl: Timeline) -> Plot:
    """One row per fault (and per non-linearizable window): when it was injected and healed."""
    rows = [(w.label(), w.t_fault, w.end(tl.duration_s), FAULT_COLOUR, "" if w.healed else " (not healed)")
            for w in tl.faults]
    rows += [(f"non-lin. key {lw.key}", lw.t_start, lw.t_end, LIN_COLOUR, "") for lw in tl.lin]
    fig, (ax,) = _figure(max(1.4, 0.9 + 0.32 * len(rows)))
    ax.set_title("Faults and checker findings")
    for i, (_label, start, end, colour, note) in enumerate(rows):
        ax.broken_barh([(start, max(end - start, tl.duration_s / 500))], (i - 0.35, 0.7), color=colour,
                       alpha=0.8 if colour == LIN_COLOUR else 1.0)
        ax.text(end, i, f"  {end - start:.2f} s{note}", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r[0] if len(r[0]) <= MAX_ROW_LABEL else r[0][:MAX_ROW_LABEL - 1] + "…"
                                     for r in rows] or [])
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    ax.invert_yaxis()
    if not rows:
        ax.text(0.5, 0.5, "no faults recorded", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
    for lead in tl.leaders:
        ax.axvline(lead.t, color="#555555", lw=0.8, ls=":", zorder=0)
    handles = [plt.Line2D([], [], color="#555555", lw=0.8, ls=":", label="new leader observed")]
    _finish(ax, tl, handles)
    return Plot("timeline", "Timeline", "Bars: fault injected → healed (duration at the right). "
                "Dotted lines: the observer first saw a leader of a new term.", _svg(fig, "timeline"))


def plot_ops(tl: Timeline) -> Plot:
    fig, (ax,) = _figure(3.2)
    ax.set_title("Client operation latency (by invoke time)")
    handles = []
    for outcome, colour in OUTCOME_COLOURS.items():
        chosen = [op for op in tl.ops if op.outcome == outcome and op.latency_s is not None]
        xs = [op.invoke_t for op in chosen]
        ys = [max(op.latency_s or 0.0, 1e-4) * 1000 for op in chosen]
        marker = {"ok": "o", "fail": "s", "info": "X"}[outcome]
        ax.scatter(xs, ys, s=9 if outcome == "ok" else 16, c=colour, marker=marker, lw=0, alpha=0.75,
                   rasterized=len(tl.ops) > RASTERIZE_OVER, zorder=2)
        handles.append(plt.Line2D([], [], color=colour, marker=marker, ls="", label=f"{outcome} ({len(chosen)})"))
    still_open = sum(op.outcome == "open" for op in tl.ops)
    if still_open:
        handles.append(plt.Line2D([], [], ls="", label=f"never completed: {still_open}"))
    ax.set_yscale("log")
    if not any(op.latency_s is not None for op in tl.ops):
        ax.set_ylim(0.1, 1000.0)  # no data to scale from: a log axis cannot autoscale an empty plot
    # Plain numbers (0.5, 1, 2, 5, 10 ms) read faster the next morning than 10^0 and 10^1.
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_ylabel("latency (ms, log scale)")
    _shade(ax, tl)
    if not tl.ops:
        ax.text(0.5, 0.5, "no client operations", transform=ax.transAxes, ha="center", va="center")
    _finish(ax, tl, handles)
    return Plot("ops", "Client operations", "One marker per operation at its invoke time. ok = took "
                "effect, fail = definitely did not, info = indeterminate (timeout, reset).", _svg(fig, "ops"))


def _segments(series: Sequence[NodeSample], end_s: float) -> list[tuple[float, float, str]]:
    """Runs of one role: each sample's role holds until the next sample (the last one until ``end_s``)."""
    out: list[tuple[float, float, str]] = []
    for i, s in enumerate(series):
        stop = series[i + 1].t if i + 1 < len(series) else max(end_s, s.t)
        if out and out[-1][2] == s.role and abs(out[-1][1] - s.t) < 1e-9:
            out[-1] = (out[-1][0], stop, s.role)
        else:
            out.append((s.t, stop, s.role))
    return out


_NODE_EVENT_MARKERS = {"kill": ("X", "#000000"), "exit": ("x", "#c62828"), "terminate": ("v", "#000000"),
                       "start": ("^", "#2e7d32"), "pause": ("|", "#000000"), "resume": ("|", "#2e7d32"),
                       "flag": ("d", "#6a1b9a")}


def plot_roles(tl: Timeline) -> Plot:
    nodes = tl.nodes or sorted(tl.samples)
    fig, (ax,) = _figure(max(1.6, 0.9 + 0.4 * len(nodes)))
    ax.set_title("Node role over time (observer samples) and process events")
    _shade(ax, tl)
    for i, node in enumerate(nodes):
        for start, stop, role in _segments(tl.samples.get(node, []), tl.duration_s):
            ax.broken_barh([(start, stop - start)], (i - 0.3, 0.6), color=ROLE_COLOURS.get(role, "#bdbdbd"),
                           lw=0)
    seen_events = set()
    for e in tl.node_events:
        if e.node in nodes and e.event in _NODE_EVENT_MARKERS:
            marker, colour = _NODE_EVENT_MARKERS[e.event]
            ax.plot([e.t], [nodes.index(e.node)], marker=marker, color=colour, ms=7, ls="", zorder=3)
            seen_events.add(e.event)
    ax.set_yticks(range(len(nodes)), nodes)
    ax.set_ylim(len(nodes) - 0.5, -0.5)
    ax.grid(False, axis="y")
    handles: list[object] = [Patch(color=c, label=r.lower()) for r, c in ROLE_COLOURS.items()]
    handles += [plt.Line2D([], [], marker=_NODE_EVENT_MARKERS[ev][0], color=_NODE_EVENT_MARKERS[ev][1],
                           ls="", label=f"process {ev}") for ev in sorted(seen_events)]
    _finish(ax, tl, handles)
    return Plot("roles", "Node roles", "Each row is one node; colour is its role as /status reported "
                "it (down = did not answer). Markers are process events recorded by the harness.",
                _svg(fig, "roles"))


def _step_lines(ax: Axes, tl: Timeline, field_name: str, offset: float = 0.0) -> list[object]:
    """One step line per node; a sample where the node did not answer breaks its line (NaN), so a
    dead node does not look frozen at its last value. Earlier nodes are drawn wider and, with
    ``offset``, nudged apart, so equal values on several nodes stay visible."""
    handles: list[object] = []
    nodes = tl.nodes or sorted(tl.samples)
    for i, node in enumerate(nodes):
        series = tl.samples.get(node, [])
        if not any(getattr(s, field_name) is not None for s in series):
            continue
        shift = (i - (len(nodes) - 1) / 2) * offset
        xs = [s.t for s in series]
        ys = [np.nan if getattr(s, field_name) is None else getattr(s, field_name) + shift for s in series]
        line, = ax.step(xs, ys, where="post", lw=1.2 + 1.3 * (len(nodes) - 1 - i) / max(len(nodes) - 1, 1),
                        label=node)
        handles.append(line)
    return handles


def plot_terms_and_commits(tl: Timeline) -> Plot:
    fig, (ax_term, ax_commit) = _figure(5.2, rows=2)
    ax_term.set_title("Raft term per node")
    ax_term.set_ylabel("term")
    # min_n_ticks=1: with a single term, only the tick "1" (not 0.5, 0.6, ... 1.5).
    ax_term.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    handles = _step_lines(ax_term, tl, "term", offset=0.04)
    terms = [s.term for series in tl.samples.values() for s in series if s.term is not None]
    if terms:  # terms are small integers: never let matplotlib zoom into 0.96..1.04
        ax_term.set_ylim(min(terms) - 0.5, max(terms) + 0.5)
    _shade(ax_term, tl)
    _finish(ax_term, tl, handles, xlabel=False)
    ax_commit.set_title("Commit index per node")
    ax_commit.set_ylabel("commit index (entries)")
    handles = _step_lines(ax_commit, tl, "commit_index")
    _shade(ax_commit, tl)
    _finish(ax_commit, tl, handles)
    return Plot("raft", "Terms and commit progress", "A node whose commit index stops rising while "
                "others advance is cut off; gaps are samples where the node did not answer. Term lines are "
                "nudged apart slightly so nodes in the same term stay visible.", _svg(fig, "raft"))


def bin_width_s(duration_s: float) -> float:
    """About 120 bins over the run, rounded to a readable width between 0.25 s and 10 s."""
    raw = duration_s / 120
    for width in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0):
        if raw <= width:
            return width
    return 10.0


def peer_rates(points: Sequence[PeerPoint], duration_s: float, width_s: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """(bin starts, requests/s per bin for each kind) from reset-corrected cumulative counts."""
    edges = np.arange(0.0, duration_s + width_s, width_s)
    times = np.array([p.t for p in points])
    counts = np.array([[p.counts[k] for k in REQUEST_KINDS] for p in points], dtype=float).reshape(-1, len(REQUEST_KINDS))
    idx = np.searchsorted(times, edges, side="right") - 1
    at = np.where(idx[:, None] >= 0, counts[np.clip(idx, 0, None)], 0.0)
    return edges[:-1], np.diff(at, axis=0) / width_s


def plot_peers(tl: Timeline) -> Plot:
    links = sorted(tl.peers)[:MAX_PEER_PANELS]
    width = bin_width_s(tl.duration_s)
    fig, axes = _figure(max(1.6, 0.8 + 1.45 * max(len(links), 1)), rows=max(len(links), 1))
    axes[0].set_title(f"Requests per peer by kind (leader→peer, requests/s in {width:g} s bins)")
    for i, (ax, link) in enumerate(zip(axes, links, strict=False)):
        starts, rates = peer_rates(tl.peers[link], tl.duration_s, width)
        handles = []
        for k, kind in enumerate(REQUEST_KINDS):
            style, width_pt = KIND_STYLES[kind]
            line, = ax.step(starts, rates[:, k], where="post", color=KIND_COLOURS[kind], lw=width_pt,
                            ls=style, label=REQUEST_KIND_LABELS[kind], alpha=0.85)
            handles.append(line)
        resets = tl.peer_resets.get(link, 0)
        ax.set_ylabel(f"{link}\nreq/s", rotation=0, ha="right", va="center", labelpad=8)
        if resets:
            ax.text(0.995, 0.9, f"{resets} counter reset(s) carried over", transform=ax.transAxes,
                    ha="right", fontsize=7, color="#555555")
        _shade(ax, tl)
        _finish(ax, tl, handles if i == 0 else (), xlabel=i == len(links) - 1, legend=i == 0)
    if not links:
        axes[0].text(0.5, 0.5, "no leader samples with peers", transform=axes[0].transAxes,
                     ha="center", va="center")
        _finish(axes[0], tl)
    caption = ("Rates from each leader's per-peer counters. A degraded peer gets status-only requests "
               "and heartbeats instead of requests with ops. Counters restart when a new leader "
               "rebuilds its peers; the rates here carry them over.")
    if len(tl.peers) > len(links):
        caption += f" Showing {len(links)} of {len(tl.peers)} links."
    return Plot("peers", "Per-peer request kinds", caption, _svg(fig, "peers"))


def render_plots(tl: Timeline) -> list[Plot]:
    """Every plot of the report, in reading order."""
    with plt.rc_context(_RC):  # type: ignore[arg-type]
        return [plot_timeline(tl), plot_ops(tl), plot_roles(tl), plot_terms_and_commits(tl),
                plot_peers(tl)]
