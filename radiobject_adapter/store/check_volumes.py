"""The per-collection part of :func:`~radiobject_adapter.store.check.check_store`: volumes,
their ``obs`` rows, unregistered folders, foreground indexes, radiobject's positional view.

Example:
    >>> report = CheckReport("store", repair=False)
    >>> subjects = check_collection(report, "store", "seg", False, False, lambda: StoreWriter("store"), vfs, ctx)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import tiledb

from radiobject_adapter.store.dataframe import read_dataframe, write_rows
from radiobject_adapter.store.foreground import COUNTS_KEY, FRAGMENT_KEY, INDEX_KEY, ForegroundIndex
from radiobject_adapter.store.layout import collection_uri, join_uri
from radiobject_adapter.store.recovery import OBS_ROW_KEY, VolumeRecord, registered_volumes

__all__ = ["check_collection", "check_foreground_index"]

REPAIRABLE, DAMAGE, WARNING = "repairable", "damage", "warning"


def _children(vfs: tiledb.VFS, uri: str) -> list[str]:
    if not vfs.is_dir(uri):
        return []
    names = [u.rstrip("/").rsplit("/", 1)[-1] for u in vfs.ls(uri)]
    return sorted(n for n in names if not n.startswith("__"))


def _row_disagreement(record: VolumeRecord, row: dict) -> str | None:
    """Why ``row`` does not describe ``record`` (None when it does)."""
    if record.subject_id is not None and str(row.get("obs_subject_id")) != record.subject_id:
        return f"row subject {row.get('obs_subject_id')!r} != volume subject {record.subject_id!r}"
    dims = str(row.get("dimensions") or "")
    if dims:
        try:
            shape = tuple(json.loads(dims.replace("(", "[").replace(")", "]")))
        except ValueError:
            shape = None
        if shape is not None and tuple(shape[:3]) != tuple(record.shape[:3]):
            return f"row dimensions {dims} != volume shape {record.shape}"
    # the volume's own row (written with its voxels) names its source; else its metadata
    src_vol = str(record.obs_row().get("source_path") or record.meta.get("source_path", ""))
    src_row = str(row.get("source_path") or "")
    if src_row and src_vol and src_row != src_vol:
        return f"row source {src_row!r} != volume source {src_vol!r}"
    return None


def check_foreground_index(
    uri: str, meta: dict[str, Any], ctx: tiledb.Ctx | None = None
) -> tuple[str | None, int | None]:
    """``(problem, newest fragment)``: problem is None when the stored index describes the
    voxels of the newest fragment (or there is no index: readers build one)."""
    if INDEX_KEY not in meta or COUNTS_KEY not in meta:
        return None, None
    stamps = [int(f.timestamp_range[1]) for f in tiledb.array_fragments(uri, ctx=ctx)]
    newest = max(stamps) if stamps else None
    if FRAGMENT_KEY in meta:  # built after the fact for one fragment; readers compare stamps too
        if newest is not None and int(meta[FRAGMENT_KEY]) != newest:
            return f"index made for fragment {meta[FRAGMENT_KEY]}, newest is {newest}", newest
        return None, newest
    with tiledb.open(uri, "r", ctx=ctx) as arr:  # written with the voxels: must count them
        data = arr[:]
    data = data[next(iter(data))] if isinstance(data, dict) else data
    counts = np.bincount(np.asarray(data).ravel().astype(np.int64)) if data.size else np.zeros(1, np.int64)
    actual = {int(c): int(counts[c]) for c in np.flatnonzero(counts)}
    stored = {int(k): int(v) for k, v in json.loads(str(meta[COUNTS_KEY])).items()}
    if actual != stored:
        return f"index counts {stored} but the newest voxels hold {actual}", newest
    return None, newest


def _rebuild_index(uri: str, newest: int | None, ctx: tiledb.Ctx | None) -> None:
    """Write an index computed from the newest fragment, stamped with it (as
    :func:`~radiobject_adapter.store.labels.ensure_foreground_index` does)."""
    from radiobject_adapter.config import forget_array

    with tiledb.open(uri, "r", timestamp=newest, ctx=ctx) as arr:
        data = arr[:]
    data = data[next(iter(data))] if isinstance(data, dict) else data
    entries = ForegroundIndex.compute(np.asarray(data)).to_metadata(fragment_ts=newest)
    with tiledb.open(uri, "w", ctx=ctx) as arr:
        for key, value in entries.items():
            arr.meta[key] = value
    forget_array(uri)


def check_collection(
    report: Any,
    uri: str,
    name: str,
    repair: bool,
    others_alive: bool,
    get_writer: Callable[[], Any],
    vfs: tiledb.VFS,
    ctx: tiledb.Ctx | None,
) -> set[str]:
    """Check (and with ``repair`` fix) collection ``name``; returns its subject ids."""
    col = collection_uri(uri, name)
    obs_uri, vols_uri = join_uri(col, "obs"), join_uri(col, "volumes")
    with tiledb.Group(col, "r", ctx=ctx) as grp:
        members = {m.name for m in grp}
        has_meta = "n_volumes" in grp.meta
    kinds = (tiledb.object_type(obs_uri, ctx=ctx), tiledb.object_type(vols_uri, ctx=ctx))
    if kinds != ("array", "group") or {"obs", "volumes"} - members or not has_meta:
        f = report.add("incomplete_collection", col, "creation cut short (obs, volumes or n_volumes missing)")
        if repair and (kinds == ("array", "group") or not others_alive):
            get_writer()._ensured.discard(name)
            get_writer().ensure_collection(name)
            f.repaired = True
        else:
            return set()
    records, unreadable = registered_volumes(vols_uri, name, ctx=ctx)
    report.volumes += len(records)
    for member, member_uri, problem in unreadable:
        report.add("unreadable_volume", member_uri, f"registered member {member!r}: {problem}", DAMAGE)
    by_obs: dict[str, list[VolumeRecord]] = {}
    for r in records:
        if r.obs_id is None:
            report.add("volume_without_id", r.uri, "registered array has no obs_id metadata", DAMAGE)
        else:
            by_obs.setdefault(r.obs_id, []).append(r)
    for obs_id, recs in by_obs.items():
        if len(recs) > 1:
            where = ", ".join(r.member for r in recs)
            report.add("duplicate_volume", col, f"{obs_id!r} is registered {len(recs)} times (members {where})", DAMAGE)

    # folders in volumes/ that no member names: a writer killed before registering them
    taken = {r.member for r in records} | {m for m, _, _ in unreadable}
    for folder in _children(vfs, vols_uri):
        if folder in taken:
            continue
        f_uri = join_uri(vols_uri, folder)
        meta: dict[str, Any] = {}
        if tiledb.object_type(f_uri, ctx=ctx) == "array":
            with tiledb.open(f_uri, "r", ctx=ctx) as arr:
                meta = {k: arr.meta[k] for k in arr.meta if not k.startswith("foreground_index")}
        obs_id = str(meta["obs_id"]) if "obs_id" in meta else None
        if others_alive:
            report.add(
                "unregistered_folder", f_uri, "perhaps a live writer's volume in the making; left alone", WARNING
            )
        elif obs_id is not None and obs_id not in by_obs and "obs_subject_id" in meta:
            f = report.add("unregistered_volume", f_uri, f"complete volume {obs_id!r} written but never registered")
            if repair:
                with tiledb.Group(vols_uri, "w", ctx=ctx) as grp:
                    grp.add(folder, name=folder, relative=True)
                (rec,), _ = registered_volumes(vols_uri, name, ctx=ctx, only=[folder])
                records.append(rec)
                by_obs[obs_id] = [rec]
                f.repaired = True
        elif obs_id is not None:
            report.add("unregistered_copy", f_uri, f"another copy of registered {obs_id!r}; left in place", WARNING)
        else:
            f = report.add("orphan_folder", f_uri, "half-written volume of a killed writer (no metadata)")
            if repair:
                vfs.remove_dir(f_uri)
                f.repaired = True

    obs = (
        read_dataframe(obs_uri, ctx=ctx) if kinds[0] == "array" else pd.DataFrame(columns=["obs_subject_id", "obs_id"])
    )
    rows_of: dict[str, list[dict]] = {}
    for row in obs.to_dict("records"):
        rows_of.setdefault(str(row["obs_id"]), []).append(row)
    fix_rows: list[dict] = []
    fixes: list[Any] = []
    for obs_id, recs in sorted(by_obs.items()):
        rec = recs[-1]
        rows = rows_of.get(obs_id, [])
        if not rows:
            if rec.subject_id is None:
                report.add("pending_volume", rec.uri, f"{obs_id!r} has no obs row and no subject id", DAMAGE)
                continue
            fixes.append(report.add("pending_volume", rec.uri, f"{obs_id!r} registered without its obs row (hidden)"))
            fix_rows.append(rec.obs_row())
        elif len(rows) > 1:
            subjects = [r["obs_subject_id"] for r in rows]
            report.add("duplicate_rows", obs_uri, f"{obs_id!r} has {len(rows)} rows (subjects {subjects})", DAMAGE)
        else:
            problem = _row_disagreement(rec, rows[0])
            if problem and OBS_ROW_KEY in rec.meta and rec.subject_id == rows[0]["obs_subject_id"]:
                fixes.append(report.add("row_mismatch", rec.uri, f"{obs_id!r}: {problem}"))
                fix_rows.append(rec.obs_row())
            elif problem:
                report.add("row_mismatch", rec.uri, f"{obs_id!r}: {problem}", DAMAGE)
    for obs_id in sorted(set(rows_of) - set(by_obs)):
        report.add(
            "row_without_volume",
            obs_uri,
            f"{obs_id!r} has a row but no volume; re-run the ingest that wrote it (it rewrites the volume)",
            DAMAGE,
        )
    if repair and fix_rows:
        write_rows(obs_uri, fix_rows, ctx=ctx)
        for f in fixes:
            f.repaired = True

    for rec in records:
        problem, newest = check_foreground_index(rec.uri, rec.meta, ctx=ctx)
        if problem:
            f = report.add("stale_foreground_index", rec.uri, problem)
            if repair:
                _rebuild_index(rec.uri, newest, ctx)
                f.repaired = True

    _check_positions(report, col, records, obs)
    subjects = {r.subject_id for r in records if r.subject_id} | set(obs["obs_subject_id"].astype(str))
    return subjects


def _check_positions(report: Any, col: str, records: list[VolumeRecord], obs: pd.DataFrame) -> None:
    """radiobject 0.1.1 maps ``volumes/<i>`` to the i-th ``obs`` row in TileDB's read order."""
    order = list(obs.sort_values(["obs_subject_id", "obs_id"])["obs_id"].astype(str))
    by_member = {r.member: r.obs_id for r in records}
    wrong = [
        i for i, obs_id in enumerate(order) if by_member.get(str(i)) is not None and by_member.get(str(i)) != obs_id
    ]
    if len(by_member) != len(order) or set(by_member) != {str(i) for i in range(len(by_member))} or wrong:
        report.add(
            "radiobject_positional",
            col,
            f"radiobject 0.1.1 pairs volumes/<i> with the i-th obs row: {len(wrong)} of {len(order)} positions "
            "hold another volume (radiobundles reads by obs_id and is not affected)",
            WARNING,
        )
