"""``radiobundles consolidate``: fewer, larger TileDB files for a store with many small writes.

Every ingested volume appends one fragment to its collection's ``obs`` table, one member
file to its ``volumes`` group and a metadata file to its collection; every label save adds
fragments and metadata to its label array. After thousands of them, opening a store and
reading its tables costs one file read per write. This merges them with TileDB's own
consolidation, then vacuums what was merged:

* ``obs`` and ``obs_meta`` tables: fragments, fragment metadata, commits and array metadata
  consolidated and vacuumed (they hold one row per volume/subject, no history anyone reads);
* group metadata of the root, ``collections/`` and each collection: consolidated and vacuumed;
* volume arrays with several fragments (label versions, re-written predictions): **only their
  fragment metadata** is consolidated, and that is vacuumed; their fragments, commits and
  array metadata stay as they are, so every label version (and the record and foreground
  index written at its timestamp) stays readable by time travel.

Nothing runs while another writer holds a live lease (the rule of :mod:`.lease`).

Example:
    >>> report = consolidate_store("store")
    >>> report.arrays, report.volumes
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tiledb

from radiobject_adapter.store.layout import collection_uri, join_uri

__all__ = ["ConsolidateReport", "consolidate_store"]

_TABLE_MODES = ("fragments", "fragment_meta", "commits", "array_meta")


@dataclass
class ConsolidateReport:
    """What :func:`consolidate_store` merged."""

    uri: str
    arrays: list[str] = field(default_factory=list)  # tables fully consolidated
    volumes: list[str] = field(default_factory=list)  # volumes whose fragment metadata was merged
    groups: list[str] = field(default_factory=list)


def _config(mode: str, ctx: tiledb.Ctx) -> tiledb.Config:
    cfg = tiledb.Config(ctx.config().dict())
    cfg["sm.consolidation.mode"] = mode
    cfg["sm.vacuum.mode"] = mode
    return cfg


def _table(uri: str, ctx: tiledb.Ctx) -> None:
    for mode in _TABLE_MODES:
        cfg = _config(mode, ctx)
        tiledb.consolidate(uri, config=cfg, ctx=ctx)
        tiledb.vacuum(uri, config=cfg, ctx=ctx)


def _group(uri: str, ctx: tiledb.Ctx) -> None:
    tiledb.Group.consolidate_metadata(uri, ctx=ctx)
    tiledb.Group.vacuum_metadata(uri, ctx=ctx)


def consolidate_store(uri: str, progress: bool = True) -> ConsolidateReport:
    """Consolidate the store at ``uri`` (see the module docstring for what, and what not).

    Raises:
        RuntimeError: another writer holds a live lease on the store.
    """
    from tqdm.auto import tqdm

    from radiobject_adapter.config import ctx_for_threads, reset_caches
    from radiobject_adapter.store.lease import WriterLease
    from radiobject_adapter.store.radiobject import RadiObject

    radi = RadiObject(uri)
    ctx = ctx_for_threads()
    lease = WriterLease(radi.uri, tiledb.VFS(ctx=ctx))
    if lease.others_alive():
        raise RuntimeError(f"another process is writing into {radi.uri!r}; consolidate when it has finished")
    lease.refresh()
    report = ConsolidateReport(radi.uri)
    try:
        for group in (radi.uri, join_uri(radi.uri, "collections")):
            _group(group, ctx)
            report.groups.append(group)
        if tiledb.object_type(join_uri(radi.uri, "obs_meta"), ctx=ctx) == "array":
            _table(join_uri(radi.uri, "obs_meta"), ctx)
            report.arrays.append(join_uri(radi.uri, "obs_meta"))
        for name in radi.collection_names:
            col = collection_uri(radi.uri, name)
            _group(col, ctx)
            _group(join_uri(col, "volumes"), ctx)
            report.groups += [col, join_uri(col, "volumes")]
            _table(join_uri(col, "obs"), ctx)
            report.arrays.append(join_uri(col, "obs"))
            with tiledb.Group(join_uri(col, "volumes"), "r", ctx=ctx) as grp:
                members = [m.uri for m in grp]
            for vol in tqdm(members, desc=f"consolidate {name}", unit="vol", disable=not progress):
                if tiledb.object_type(vol, ctx=ctx) != "array":
                    continue
                if len(tiledb.array_fragments(vol, ctx=ctx)) < 2:
                    continue  # one fragment: nothing to merge
                # label versions: fragment metadata only (fragments and commits untouched)
                cfg = _config("fragment_meta", ctx)
                tiledb.consolidate(vol, config=cfg, ctx=ctx)
                tiledb.vacuum(vol, config=cfg, ctx=ctx)
                report.volumes.append(vol)
    finally:
        lease.release()
        reset_caches()
    return report
