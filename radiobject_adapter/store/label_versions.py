"""Label versions kept by TileDB time travel: every save is a new fragment, none is overwritten.

A label volume is one dense array. Each save writes the whole label as a new fragment at a
timestamp (ms) larger than any before it, so that opening the array at that timestamp reads
exactly that version, and opening it without one reads the latest. Who saved which version,
when and how is kept in array metadata under a key unique to the save,
``label_version:<timestamp>:<random>``, so two saves never clobber each other's record; the
metadata of each save (including the foreground index the training sampler uses) is written
at the save's own timestamp, so time travel returns it too.

Fragments are the truth: a fragment without a record (written by ingest or by another tool)
is still listed, with ``source="store"``, and a record without a fragment is not listed. Never
consolidate label arrays; that would merge their versions.

A save is two writes, and a process killed between any two steps leaves no torn version:
first the record (keyed by the version's timestamp) together with the removal of the previous
version's foreground index, one millisecond earlier; then the voxels (a fragment commits
whole or not at all) and the new foreground index. Killed after the first write, the record
names no fragment and lists nothing; killed after the voxels, the version is whole and
attributed, and readers that find no foreground index compute it from the voxels they read
(:func:`~radiobject_adapter.store.labels.ensure_foreground_index`, which also rebuilds an
index it finds made for an older fragment), never using another
version's.

Example:
    >>> version = write_version(uri, labels, {"annotator": "ann1", "tag": "final", "source": "slicer"})
    >>> [v.version for v in list_versions(uri)]
    [1795253151748, 1795253163020]
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import tiledb

from radiobject_adapter.config import ctx_for_threads, forget_array
from radiobject_adapter.store.foreground import FOREGROUND_KEYS, ForegroundIndex
from radiobject_adapter.store.layout import VOXELS

__all__ = [
    "RECORD_PREFIX",
    "LabelVersion",
    "fragment_timestamps",
    "list_versions",
    "next_timestamp",
    "read_version",
    "record_metadata",
    "write_version",
]

RECORD_PREFIX = "label_version:"
_MAX_INFO_BYTES = 64 * 1024
_MAX_WAIT_MS = 2000


@dataclass(frozen=True)
class LabelVersion:
    """One saved version of a label: its TileDB timestamp and who/when/how."""

    version: int
    tag: str = ""
    annotator: str | None = None
    time: str | None = None
    source: str = "store"
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def next_timestamp(last: int) -> int:
    """A timestamp (ms) strictly after ``last`` and not in the future.

    Waits the few milliseconds needed when saves come faster than the clock ticks: a
    fragment stamped in the future would be invisible to readers until then.
    """
    now = now_ms()
    if last - now > _MAX_WAIT_MS:  # clock stepped back: keep the order, accept a future stamp
        return last + 1
    while now <= last:
        time.sleep((last - now + 1) / 1000)
        now = now_ms()
    return now


def fragment_timestamps(uri: str) -> list[int]:
    """Start timestamps of the array's fragments, oldest first."""
    fragments = tiledb.array_fragments(uri, ctx=ctx_for_threads())
    return sorted({int(f.timestamp_range[0]) for f in fragments})


def _records(uri: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    with tiledb.open(uri, "r", ctx=ctx_for_threads()) as arr:
        for key in arr.meta:
            if not key.startswith(RECORD_PREFIX):
                continue
            try:
                record = json.loads(str(arr.meta[key]))
                out[int(key[len(RECORD_PREFIX) :].split(":", 1)[0])] = record
            except (ValueError, TypeError):
                continue  # a record that is not ours; the fragment still lists
    return out


def list_versions(uri: str, tag: str = "") -> list[LabelVersion]:
    """Every version of the label array at ``uri``, oldest first."""
    records = _records(uri)
    versions = []
    for ts in fragment_timestamps(uri):
        rec = records.get(ts, {})
        versions.append(
            LabelVersion(
                version=ts,
                tag=str(rec.get("tag", tag)),
                annotator=rec.get("annotator"),
                time=rec.get("time") or datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat(),
                source=str(rec.get("source", "store")),
                info=dict(rec.get("info") or {}),
            )
        )
    return versions


def _record_json(record: Mapping[str, Any], ts: int) -> str:
    rec = {k: v for k, v in record.items() if k != "info"}
    rec.setdefault("time", datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat())
    info = record.get("info") or {}
    text = json.dumps(info, default=str)
    rec["info"] = json.loads(text) if len(text) <= _MAX_INFO_BYTES else {"truncated": True}
    return json.dumps({**rec, "version": ts}, default=str)


def _record_key(ts: int) -> str:
    return f"{RECORD_PREFIX}{ts:013d}:{uuid.uuid4().hex[:12]}"


def record_metadata(ts: int, record: Mapping[str, Any]) -> dict[str, str]:
    """The metadata entry that records ``record`` for the version at ``ts`` (to write it
    together with the version's voxels, e.g. through ``StoreWriter.write_volume(raw_meta=...)``)."""
    return {_record_key(ts): _record_json(record, ts)}


def _begin_version(uri: str, at: int, ts: int, record: Mapping[str, Any] | None) -> None:
    """Step 1 of a save, at ``at`` (just before ``ts``): the record of version ``ts`` (if any),
    and no foreground index any more (the previous version's must never describe the new voxels)."""
    with tiledb.open(uri, "w", timestamp=at, ctx=ctx_for_threads()) as arr:
        if record is not None:
            arr.meta[_record_key(ts)] = _record_json(record, ts)
        for key in FOREGROUND_KEYS:
            del arr.meta[key]  # a missing key is no error


def _commit_version(uri: str, ts: int, data: np.ndarray, meta: Mapping[str, Any]) -> None:
    """Step 2 of a save, at ``ts``: the voxels (one fragment, committed whole), then ``meta``."""
    with tiledb.open(uri, "w", timestamp=ts, ctx=ctx_for_threads()) as arr:
        arr[tuple(slice(0, n) for n in data.shape)] = np.ascontiguousarray(data)
        for key, value in meta.items():
            arr.meta[key] = value


def write_version(
    uri: str, data: np.ndarray, record: Mapping[str, Any] | None, extra_meta: Mapping[str, Any] = ()
) -> int:
    """Write ``data`` as the newest version of the label at ``uri``; returns its timestamp.

    ``record`` (who/when/how) is listed by :func:`list_versions`; ``None`` writes none (the
    version then lists with ``source="store"``, as a fragment another tool wrote).

    The caller serialises saves of one array (a lock); the timestamp is strictly larger than
    every existing fragment's and record's, so "latest" is always this save until the next
    one. Two writes, in the order that leaves nothing torn when the process dies between or
    within them (see the module docstring).
    """
    before = next_timestamp(max([*fragment_timestamps(uri), *_records(uri)], default=0))
    ts = next_timestamp(before)
    index = ForegroundIndex.compute(data).to_metadata()
    _begin_version(uri, before, ts, record)
    _commit_version(uri, ts, data, {**dict(extra_meta), **index})
    forget_array(uri)
    return ts


def read_version(uri: str, version: int) -> np.ndarray:
    """The label as it was saved at ``version`` (a timestamp from :func:`list_versions`)."""
    if version not in fragment_timestamps(uri):
        raise KeyError(version)
    with tiledb.open(uri, "r", timestamp=version, ctx=ctx_for_threads()) as arr:
        out = arr[:]
    return out[VOXELS] if isinstance(out, dict) else out
