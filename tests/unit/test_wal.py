"""WAL segments, truncation markers, torn tails and corruption; consensus metadata (nodes/wal.py, nodes/meta.py)."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest

from nodes.meta import META_FILE, MetadataError, MetadataStore
from nodes.wal import (
    HEADER_BYTES,
    LogEntry,
    Wal,
    WalCorruption,
    WalError,
    encode_entry,
    encode_record,
    segment_name,
)


def entries(first: int, last: int, term: int = 1) -> list[LogEntry]:
    return [LogEntry(term, i, "WRITE", {"key": f"k{i}", "value": "v" * (i % 7)}) for i in range(first, last + 1)]


def reopen(directory: Path, **kwargs: object) -> tuple[Wal, list[LogEntry]]:
    wal = Wal(directory, **kwargs)  # type: ignore[arg-type]
    return wal, wal.recover()


def test_log_entry_json_round_trip() -> None:
    for e in [LogEntry(3, 1, "NO_OP"), LogEntry(3, 2, "WRITE", {"k": [1, None]}),
              LogEntry(4, 3, "CONFIG", {"voters": ["n1"]})]:
        assert LogEntry.from_json(json.loads(json.dumps(e.to_json()))) == e
    for bad in [{"term": 1, "index": 0, "kind": "WRITE"}, {"term": -1, "index": 1, "kind": "WRITE"},
                {"term": 1, "index": 1, "kind": "BOGUS"}, {"term": True, "index": 1, "kind": "NO_OP"},
                {"term": 1, "index": 1, "kind": "WRITE", "payload": [1]}, [1, 2]]:
        with pytest.raises(ValueError):
            LogEntry.from_json(bad)


def test_append_and_recover_across_segment_rolls(tmp_path: Path) -> None:
    wal, got = reopen(tmp_path, segment_bytes=300)
    assert got == [] and wal.last_index == 0
    written = entries(1, 40)
    for i in range(0, 40, 4):
        wal.append(written[i:i + 4])
    assert wal.stats.appends == 10 and wal.stats.fsyncs == 10  # one fsync per batch
    wal.close()
    segments = sorted(os.listdir(tmp_path))
    assert len(segments) > 3 and segments[0] == segment_name(1) == "wal-000001.log"
    wal, got = reopen(tmp_path, segment_bytes=300)
    assert got == written and wal.last_index == 40
    wal.append(entries(41, 41))  # continues after the recovered tail
    wal.close()
    assert reopen(tmp_path, segment_bytes=300)[1] == entries(1, 41)


def test_group_commit_is_one_fsync(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path)
    wal.append(entries(1, 100))
    assert (wal.stats.appends, wal.stats.entries, wal.stats.fsyncs) == (1, 100, 1)
    wal.close()
    nosync, _ = reopen(tmp_path, fsync=False)
    nosync.append(entries(101, 110))
    assert nosync.stats.fsyncs == 0
    nosync.close()


def test_append_must_be_contiguous(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path)
    wal.append(entries(1, 3))
    with pytest.raises(ValueError, match="expected 4"):
        wal.append(entries(5, 6))
    with pytest.raises(ValueError, match="entry index 6, expected 5"):
        wal.append([*entries(4, 4), *entries(6, 6)])
    assert wal.stats.appends == 1  # nothing of the bad batches was written
    wal.close()


def test_must_recover_before_writing(tmp_path: Path) -> None:
    wal = Wal(tmp_path)
    with pytest.raises(WalError, match="recover"):
        wal.append(entries(1, 1))
    wal.recover()
    wal.close()
    with pytest.raises(WalError, match="closed"):
        wal.append(entries(1, 1))


def test_truncation_markers_are_durable(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path, segment_bytes=400)
    wal.append(entries(1, 20))
    wal.append(entries(21, 30))
    wal.truncate_after(25)                     # drop a conflicting suffix
    wal.append(entries(26, 28, term=2))
    wal.truncate_after(30)                     # nothing above 28: no record written
    assert wal.stats.truncations == 1
    wal.close()
    wal, got = reopen(tmp_path, segment_bytes=400)
    assert got == entries(1, 25) + entries(26, 28, term=2)
    wal.truncate_after(3)                      # reaches back into an earlier segment
    wal.append(entries(4, 5, term=3))
    wal.close()
    assert reopen(tmp_path)[1] == entries(1, 3) + entries(4, 5, term=3)
    wal, _ = reopen(tmp_path)
    wal.truncate_after(0)
    wal.close()
    assert reopen(tmp_path)[1] == []


def _last_record_bounds(tmp_path: Path) -> tuple[Path, int, int]:
    wal, _ = reopen(tmp_path)
    wal.append(entries(1, 4))
    start = wal.stats.bytes
    wal.append(entries(5, 5))
    wal.close()
    path = tmp_path / segment_name(1)
    return path, start, path.stat().st_size


def test_torn_tail_cut_at_every_offset_is_repaired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, start, end = _last_record_bounds(tmp_path / "orig")
    full = path.read_bytes()
    for cut in range(start, end):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / segment_name(1)).write_bytes(full[:cut])
        with caplog.at_level(logging.WARNING, logger="nodes.wal"):
            wal, got = reopen(d)
        assert got == entries(1, 4), cut
        assert (d / segment_name(1)).stat().st_size == start, cut  # file repaired
        assert wal.stats.torn_tails_repaired == (cut > start)
        wal.append(entries(5, 5))  # and writable again
        wal.close()
        assert reopen(d)[1] == entries(1, 5)
    assert sum("torn tail" in r.getMessage() for r in caplog.records) == end - start - 1


@pytest.mark.parametrize("tail", ["flip_last_payload", "zeros_after", "zeroed_payload", "zeroed_header"])
def test_damaged_last_record_at_the_tail_is_torn(tmp_path: Path, tail: str) -> None:
    """A damaged last record is torn when it reaches EOF or only zeros follow it (a crash can
    leave a file extended with zeros)."""
    path, start, end = _last_record_bounds(tmp_path)
    data = bytearray(path.read_bytes())
    expect = entries(1, 4)
    if tail == "flip_last_payload":
        data[end - 2] ^= 0x40
    elif tail == "zeros_after":
        data += bytes(100)
        expect = entries(1, 5)
    elif tail == "zeroed_payload":
        data[start + HEADER_BYTES + 5:] = bytes(len(data) - start - HEADER_BYTES - 5 + 64)
    else:
        data[start + 6:] = bytes(len(data) - start - 6 + 64)
    path.write_bytes(bytes(data))
    wal, got = reopen(tmp_path)
    assert got == expect
    assert path.stat().st_size == (start if expect == entries(1, 4) else end)
    wal.close()


def _record_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += HEADER_BYTES + int.from_bytes(data[pos:pos + 4], "big")
    return offsets


@pytest.mark.parametrize("where", [0, 3, 5, 9, HEADER_BYTES, HEADER_BYTES + 7])
def test_mid_log_corruption_names_file_and_offset(tmp_path: Path, where: int) -> None:
    wal, _ = reopen(tmp_path)
    wal.append(entries(1, 6))
    wal.close()
    path = tmp_path / segment_name(1)
    data = bytearray(path.read_bytes())
    victim = _record_offsets(bytes(data))[2]
    data[victim + where] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WalCorruption, match=rf"{re.escape(str(path))}: offset {victim}: .*checksum"):
        Wal(tmp_path).recover()
    assert path.read_bytes() == bytes(data)  # refused logs are left untouched


def test_damage_in_a_non_last_segment_is_corruption_even_at_its_end(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path, segment_bytes=200)
    for i in range(1, 30, 3):
        wal.append(entries(i, i + 2))
    wal.close()
    first = tmp_path / segment_name(1)
    data = first.read_bytes()
    first.write_bytes(data[:-3])
    with pytest.raises(WalCorruption, match=rf"{re.escape(str(first))}: offset \d+: .*not the last segment"):
        Wal(tmp_path).recover()


def test_missing_segment_and_index_gaps_are_corruption(tmp_path: Path) -> None:
    wal, _ = reopen(tmp_path / "a", segment_bytes=200)
    for i in range(1, 30, 3):
        wal.append(entries(i, i + 2))
    wal.close()
    (tmp_path / "a" / segment_name(2)).unlink()
    with pytest.raises(WalCorruption, match="wal-000002.log is missing"):
        Wal(tmp_path / "a").recover()

    (tmp_path / "b").mkdir()
    records = [encode_record(e.to_json()) for e in entries(1, 3) + entries(5, 5)]
    (tmp_path / "b" / segment_name(1)).write_bytes(b"".join(records))
    with pytest.raises(WalCorruption, match="entry index 5 does not follow 3"):
        Wal(tmp_path / "b").recover()


def test_valid_checksum_but_bad_content_is_corruption(tmp_path: Path) -> None:
    record = encode_record({"term": 1, "index": 1, "kind": "BOGUS"})
    (tmp_path / segment_name(1)).write_bytes(record + encode_record(entries(1, 1)[0].to_json()))
    with pytest.raises(WalCorruption, match="offset 0: log entry: unknown kind"):
        Wal(tmp_path).recover()


# --- consensus metadata -----------------------------------------------------------------------

def test_metadata_absent_then_saved_and_loaded(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path)
    assert store.load() == (0, None)
    store.save(3, "n2")
    store.save(4, None)
    assert store.flush_count == 2
    assert MetadataStore(tmp_path).load() == (4, None)
    assert os.listdir(tmp_path) == [META_FILE]  # no temp file left behind


def test_metadata_ignores_a_leftover_temp_file(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path)
    store.save(7, "n1")
    (tmp_path / (META_FILE + ".tmp")).write_bytes(b'{"term": 9')  # crash mid-save
    assert MetadataStore(tmp_path).load() == (7, "n1")
    store.save(8, "n3")
    assert MetadataStore(tmp_path).load() == (8, "n3")


@pytest.mark.parametrize(("content", "problem"), [
    (b'{"term": 5', "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[]", "expected keys"),
    (b'{"term": 5, "voted_for": null}', "expected keys"),
    (b'{"term": -1, "voted_for": null, "crc32": 0}', "bad term"),
    (b'{"term": 5, "voted_for": 3, "crc32": 0}', "bad voted_for"),
    (None, "checksum mismatch"),
])
def test_corrupt_metadata_names_the_file(tmp_path: Path, content: bytes | None, problem: str) -> None:
    store = MetadataStore(tmp_path)
    store.save(5, "n1")
    if content is None:  # a bit flip in the term: still valid JSON, caught by the CRC
        content = store.path.read_bytes().replace(b'"term":5', b'"term":7')
    store.path.write_bytes(content)
    with pytest.raises(MetadataError, match=rf"{re.escape(str(store.path))}.*{problem}"):
        store.load()


def test_metadata_rejects_bad_values(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path)
    with pytest.raises(ValueError):
        store.save(-1, None)
    assert store.flush_count == 0 and store.load() == (0, None)


def test_entry_record_from_cached_text_is_the_record_of_its_json() -> None:
    """encode_entry (the WAL's path, issue #14) writes byte for byte what encode_record writes
    for the entry's JSON, and the entry's text is encoded once."""
    e = LogEntry(3, 7, "WRITE", {"op": "put", "key": "k\u00e9", "value": "v"})
    assert encode_entry(e) == encode_record(e.to_json())
    assert e.json_text() is e.json_text()
    assert LogEntry(3, 7, "NO_OP") == LogEntry(3, 7, "NO_OP")  # the cache is not a field
    n = LogEntry(3, 7, "NO_OP")
    n.json_text()
    assert n == LogEntry(3, 7, "NO_OP") and hash(n) == hash(LogEntry(3, 7, "NO_OP"))
