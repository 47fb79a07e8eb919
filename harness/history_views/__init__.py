"""The one read model of a saved history: typed views that checkers and reports both read.

``events.jsonl`` (``harness.history``) is written once and read by two audiences: the checkers
(``harness.checkers``), which judge a run, and the reports (``reports``), which show it. Each view
is defined once, in this package, so a checker's verdict and the report beside it count the same
ops, the same fault windows, leader changes and requests. The rules where readers used to differ:

* A client op is an ``invoke`` paired with the next completion of the same ``(process, final)``;
  one with no completion (the history ended first) is ``open``: as indeterminate as ``info``, no
  completion time, no latency. A process that invokes again before completing breaks the schema
  (``malformed``): its first op is still shown, as open, never dropped.
* An op's latency is the ``latency_s`` its client recorded on the completion (measured around the
  request itself), else completion ``t`` minus invoke ``t``.
* A ``heal`` closes the earliest open fault with the same name and the same targets (a heal
  event repeats its fault's record: ``harness.fault.record_heal``); it never closes a fault of
  other targets. A fault never healed has ``t_heal`` None and lasts until the history's last
  event; the checkers that need a heal say unknown for it.
* A leadership is a term in which the observer saw some node report ``LEADER`` (at most one
  leader per term, Raft's Election Safety, so a term names a leadership); leader changes are the
  leaderships after the first. A deposed leader still claiming its old term adds nothing; a
  leader of a term sampled only after a later term's still counts. The agreed-leader timeline
  (``leader_timeline``) answers a different question, who a majority followed at a time, and is
  used for that only.
* A leader's requests to a peer come from its per-peer counters carried over resets (a new term,
  or a counter going down); a sample missed in between is no reset (``peers``).
* A malformed event (``malformed``: no finite number ``t``, a client event whose ``process`` is
  not an int, a sample or node event without its node) is left out of every view, and never
  silently: a checker first calls ``require_well_formed`` for the kinds it reads, which raises
  (``guarded`` turns that into unknown naming the event), and a report lists ``malformed`` among
  its problems and shows the rest.

The linearizability checker's own fast reader (``op_reader``/``history_ops``) stays apart: it is
the 100k-op performance path and reads the file, not these objects; ``Op.index`` here is the same
0-based event position its anomalies name.
"""

from harness.history_views.faults import FaultWindow, fault_windows
from harness.history_views.nodes import (
    DOWN,
    LeaderChange,
    Leadership,
    NodeEvent,
    NodeSample,
    agreed_after,
    leader_at,
    leader_changes,
    leader_timeline,
    leaders_during,
    leaderships,
    node_events,
    node_samples,
)
from harness.history_views.ops import OPEN, OUTCOMES, WRITE_FNS, Op, client_ops
from harness.history_views.peers import (
    PEER_COUNTERS,
    REQUEST_KINDS,
    PeerPoint,
    counts_at,
    counts_between,
    peer_series,
)
from harness.history_views.run import run_nodes, run_spec, run_timing
from harness.history_views.wellformed import (
    CLIENT,
    FAULTS,
    NODES,
    SAMPLES,
    MalformedHistory,
    history_end,
    malformed,
    number,
    require_well_formed,
)

__all__ = ["CLIENT", "DOWN", "FAULTS", "NODES", "OPEN", "OUTCOMES", "PEER_COUNTERS", "REQUEST_KINDS", "SAMPLES", "WRITE_FNS",
           "FaultWindow", "LeaderChange", "Leadership", "MalformedHistory", "NodeEvent", "NodeSample", "Op",
           "PeerPoint", "agreed_after", "client_ops", "counts_at", "counts_between", "fault_windows",
           "history_end", "leader_at", "leader_changes", "leader_timeline", "leaders_during", "leaderships",
           "malformed", "node_events", "node_samples", "number", "peer_series", "require_well_formed",
           "run_nodes", "run_spec", "run_timing"]
