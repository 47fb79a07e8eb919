"""The node's fatal exits: a structured record of why, written where the harness finds it after
the process is gone, then an abort with a status that names the cause.

kuduraft ends the process on a broken invariant (CHECK / LOG(FATAL), e.g. RaftConsensus::
CheckLeaderRequestUnlocked's "Unexpected new leader in same term!" in raft_consensus.cc, or
PeerMessageQueue::ResponseFromPeer's CHECK_LE(responder_term, current_term) in
consensus_queue.cc) and on a failed WAL write (log.cc treats append errors as fatal). A chaos
harness must tell those apart from the injected ``fault_crash_*`` exit (85), so each has its own
status, and the record goes to three places: one log line (the backend keeps the log file, the
harness reads its tail), ``fatal.json`` in the data directory, and ``/status`` (``fatal``) for as
long as the process still answers.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

EXIT_INVARIANT = 70  # sysexits EX_SOFTWARE: an invariant of the protocol does not hold
EXIT_FATAL_STORAGE = 74  # sysexits EX_IOERR: the WAL or the metadata could not be written
FATAL_FILE = "fatal.json"
FATAL_LOG_MARK = "RAFTCHAOS_FATAL "
"""Prefix of the one log line that carries the record as JSON (parsed by harness.supervisor)."""

KIND_INVARIANT = "invariant_violation"
KIND_STORAGE = "storage_error"


def invariant_record(node: str, what: str, term: int, uuids: dict[str, str | None],
                     op_ids: dict[str, list[int]], message: str) -> dict[str, Any]:
    """The record of a broken invariant: which one, in which term, the uuids involved (both
    leaders, or the peer and us) and the op ids that show it."""
    return {"kind": KIND_INVARIANT, "what": what, "node": node, "term": term,
            "uuids": dict(uuids), "op_ids": {k: list(v) for k, v in op_ids.items()},
            "message": message, "exit_status": EXIT_INVARIANT}


def storage_record(node: str, what: str, message: str) -> dict[str, Any]:
    return {"kind": KIND_STORAGE, "what": what, "node": node, "message": message,
            "exit_status": EXIT_FATAL_STORAGE}


def publish(record: dict[str, Any], logger: logging.Logger, data_dir: Path | None) -> None:
    """Log the record as one line and write ``fatal.json`` (best effort: the disk may be what
    failed). Handlers are flushed, because the caller exits without any cleanup next."""
    logger.critical("%s%s", FATAL_LOG_MARK, json.dumps(record, sort_keys=True))
    if data_dir is not None:
        try:
            path = Path(data_dir) / FATAL_FILE
            with path.open("w", encoding="utf-8") as fh:
                json.dump(record, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as e:
            logger.critical("could not write %s: %s", FATAL_FILE, e)
    for handler in logging.getLogger().handlers + logger.handlers:
        handler.flush()


def parse_log_line(line: str) -> dict[str, Any] | None:
    """The record carried by a log line, or None when the line has none (or a damaged one)."""
    at = line.find(FATAL_LOG_MARK)
    if at < 0:
        return None
    try:
        doc = json.loads(line[at + len(FATAL_LOG_MARK):])
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
