"""``radiobundles check``: a store's invariants, and the repairs that stored data allows.

What is checked (each problem is a :class:`Finding`):

* the root group opens, its format version is one this radiobundles reads, no empty
  (torn) metadata files are left by a killed writer;
* every collection folder is registered and complete (``obs``, ``volumes``, ``n_volumes``);
* every registered volume is a readable array with an ``obs_id``, appears once, and has
  exactly one ``obs`` row that agrees with it (subject, shape, source); every ``obs`` row has
  its volume; no folder in ``volumes/`` is left unregistered;
* counters (``n_volumes``, ``x|y|z_dim``, ``subject_count``, ``n_collections``) and the
  subject table match the volumes;
* a label's foreground index describes the voxels of its newest fragment;
* radiobject 0.1.1 maps ``volumes/<i>`` to the i-th ``obs`` row: a store where that is not
  the right volume is flagged (radiobundles itself reads by ``obs_id``).

``repair=True`` fixes what stored data allows and nothing else: rows re-derived from the
volumes' metadata, complete unregistered volumes registered, half-created folders of dead
writers removed (only while no other writer holds a live lease, the rule of :mod:`.lease`),
counters and subject rows rewritten, stale foreground indexes rebuilt. It never deletes a
volume, a fragment, or a label version; a row whose volume is gone is reported, not dropped
(the ingest that wrote it rewrites the volume).

Example:
    >>> report = check_store("store", repair=True)
    >>> print(report.summary()); report.exit_code          # 0 clean, 1 repaired, 2 damaged
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import tiledb

from radiobject_adapter.store.dataframe import read_dataframe, write_rows
from radiobject_adapter.store.layout import (
    FORMAT_VERSION_KEY,
    FormatVersionError,
    collection_uri,
    join_uri,
    local_path,
    read_format_version,
)
from radiobject_adapter.store.lease import WriterLease

__all__ = ["CheckReport", "Finding", "check_store"]

REPAIRABLE, DAMAGE, WARNING = "repairable", "damage", "warning"


@dataclass
class Finding:
    """One problem: its kind, where, what, how bad, and whether ``repair`` fixed it."""

    kind: str
    where: str
    message: str
    severity: str = REPAIRABLE
    repaired: bool = False

    def line(self) -> str:
        state = "REPAIRED" if self.repaired else self.severity.upper()
        return f"[{state}] {self.kind}: {self.where}: {self.message}"


@dataclass
class CheckReport:
    """The findings of :func:`check_store`; :attr:`exit_code` is the CLI's exit status."""

    uri: str
    repair: bool
    findings: list[Finding] = field(default_factory=list)
    volumes: int = 0
    collections: int = 0

    def add(self, kind: str, where: str, message: str, severity: str = REPAIRABLE) -> Finding:
        finding = Finding(kind, where, message, severity)
        self.findings.append(finding)
        return finding

    @property
    def problems(self) -> list[Finding]:
        """Findings not repaired that are not mere warnings."""
        return [f for f in self.findings if not f.repaired and f.severity != WARNING]

    @property
    def clean(self) -> bool:
        return not [f for f in self.findings if f.severity != WARNING]

    @property
    def exit_code(self) -> int:
        """0: nothing wrong; 1: problems found and all repaired; 2: problems remain
        (without ``repair`` every problem remains, including repairable ones)."""
        if self.clean:
            return 0
        return 2 if self.problems else 1

    def kinds(self, include_repaired: bool = True) -> set[str]:
        return {f.kind for f in self.findings if include_repaired or not f.repaired}

    def summary(self) -> str:
        head = f"store {self.uri}: {self.collections} collections, {self.volumes} volumes"
        lines = [head, *(f"  {f.line()}" for f in self.findings)]
        status = {0: "clean", 1: "repaired", 2: "damaged"}[self.exit_code]
        if self.exit_code == 2 and not self.repair and all(f.severity == REPAIRABLE for f in self.problems):
            status = "needs repair: run `radiobundles check --repair`"
        lines.append(f"status: {status}")
        return "\n".join(lines)


def _torn_files(root: str) -> list[str]:
    path = local_path(root)
    out: list[str] = []
    if path is None:
        return out
    for folder, _dirs, files in os.walk(path):
        if os.path.basename(folder) in ("__meta", "__group"):
            out.extend(os.path.join(folder, f) for f in files if os.path.getsize(os.path.join(folder, f)) == 0)
    return out


def _children(vfs: tiledb.VFS, uri: str) -> list[str]:
    """Names of the entries of a folder other than TileDB's own (``__group``, ``__meta`` ...)."""
    if not vfs.is_dir(uri):
        return []
    names = [u.rstrip("/").rsplit("/", 1)[-1] for u in vfs.ls(uri)]
    return sorted(n for n in names if not n.startswith("__"))


def check_store(uri: str, repair: bool = False) -> CheckReport:
    """Check the store at ``uri``; with ``repair``, fix what can be fixed from stored data.

    Returns a :class:`CheckReport` (``print(report.summary())``, ``report.exit_code``).
    """
    from radiobject_adapter.config import ctx_for_threads, reset_caches
    from radiobject_adapter.store.writer import StoreWriter

    uri = str(uri).rstrip("/")
    if "://" not in uri:
        uri = os.path.abspath(uri)
    report = CheckReport(uri, repair)
    ctx = ctx_for_threads()
    vfs = tiledb.VFS(ctx=ctx)
    lease = WriterLease(uri, vfs)
    others = lease.others_alive()
    if others:
        report.add(
            "live_writer", uri, "another writer holds a live lease: folders it may be writing are left alone", WARNING
        )

    torn = _torn_files(uri)
    if torn:
        f = report.add("torn_metadata", uri, f"{len(torn)} empty group/array metadata file(s) left by a killed writer")
        if repair and not others:
            for path in torn:
                os.remove(path)
            f.repaired = True
        else:
            return report  # TileDB cannot open a group or array with such a file: nothing more to check
    if tiledb.object_type(uri, ctx=ctx) != "group":
        report.add("not_a_store", uri, "no TileDB group here", DAMAGE)
        return report
    with tiledb.Group(uri, "r", ctx=ctx) as grp:
        meta = {k: grp.meta[k] for k in grp.meta}
        root_members = {m.name for m in grp}
    try:
        read_format_version(meta)
    except FormatVersionError as err:
        report.add("format_version", uri, str(err), DAMAGE)
        return report
    if tiledb.object_type(join_uri(uri, "collections"), ctx=ctx) != "group" or "collections" not in root_members:
        f = report.add("incomplete_root", uri, "the store's creation was cut short (collections group missing)")
        if repair and not others:
            StoreWriter(uri, ctx=ctx).close()  # completes the root step by step
            f.repaired = True
            with tiledb.Group(uri, "r", ctx=ctx) as grp:
                meta = {k: grp.meta[k] for k in grp.meta}
    elif FORMAT_VERSION_KEY not in meta and "n_collections" not in meta:
        f = report.add("incomplete_root", uri, "root metadata (format version, counters) missing")
        if repair:
            StoreWriter(uri, ctx=ctx).close()
            f.repaired = True
    if tiledb.object_type(join_uri(uri, "collections"), ctx=ctx) != "group":
        return report

    writer: StoreWriter | None = None

    def get_writer() -> StoreWriter:
        nonlocal writer
        if writer is None:
            writer = StoreWriter(uri, ctx=ctx)
        return writer

    with tiledb.Group(join_uri(uri, "collections"), "r", ctx=ctx) as grp:
        registered = sorted(m.name for m in grp)
    for name in _children(vfs, join_uri(uri, "collections")):
        if name in registered:
            continue
        folder = collection_uri(uri, name)
        if tiledb.object_type(folder, ctx=ctx) == "group":
            f = report.add("unregistered_collection", folder, "collection created but never registered")
            if repair:
                get_writer().ensure_collection(name)
                registered.append(name)
                f.repaired = True
        else:
            f = report.add("orphan_folder", folder, "half-created collection folder of a killed writer")
            if repair and not others:
                vfs.remove_dir(folder)
                f.repaired = True

    all_subjects: set[str] = set()
    from radiobject_adapter.store.check_volumes import check_collection

    for name in sorted(registered):
        report.collections += 1
        subjects = check_collection(report, uri, name, repair, others, get_writer, vfs, ctx)
        all_subjects |= subjects

    _check_counters(report, uri, sorted(registered), all_subjects, repair, get_writer, ctx)
    _check_subject_table(report, uri, all_subjects, repair, get_writer, ctx)
    if writer is not None:
        writer.close()
    reset_caches()
    return report


def _check_counters(report, uri, names, subjects, repair, get_writer, ctx) -> None:
    stale: list[str] = []
    for name in names:
        col = collection_uri(uri, name)
        if tiledb.object_type(join_uri(col, "volumes"), ctx=ctx) != "group":
            continue
        with tiledb.Group(col, "r", ctx=ctx) as grp:
            meta = {k: grp.meta[k] for k in grp.meta}
        with tiledb.Group(join_uri(col, "volumes"), "r", ctx=ctx) as grp:
            n = len(grp)
        if int(meta.get("n_volumes", -1)) != n:
            stale.append(f"{name}.n_volumes={meta.get('n_volumes')} (volumes: {n})")
    with tiledb.Group(uri, "r", ctx=ctx) as grp:
        meta = {k: grp.meta[k] for k in grp.meta}
    if int(meta.get("subject_count", -1)) != len(subjects):
        stale.append(f"subject_count={meta.get('subject_count')} (subjects: {len(subjects)})")
    if int(meta.get("n_collections", -1)) != len(names):
        stale.append(f"n_collections={meta.get('n_collections')} (collections: {len(names)})")
    if stale:
        f = report.add("stale_counters", uri, "; ".join(stale))
        if repair and names:
            get_writer().update_counters(names)
            f.repaired = True


def _check_subject_table(report, uri, subjects, repair, get_writer, ctx) -> None:
    table = join_uri(uri, "obs_meta")
    if tiledb.object_type(table, ctx=ctx) != "array":
        return  # stores written without ingest (label app, predictions) need none
    with tiledb.Group(uri, "r", ctx=ctx) as grp:
        registered = "obs_meta" in {m.name for m in grp}
    if not registered:
        f = report.add("unregistered_subject_table", table, "subject table created but not registered")
        if repair:
            with tiledb.Group(uri, "w", ctx=ctx) as grp:
                grp.add("obs_meta", name="obs_meta", relative=True)
            f.repaired = True
    known = set(read_dataframe(table, ctx=ctx)["obs_subject_id"])
    missing = sorted(subjects - known)
    if missing:
        f = report.add(
            "missing_subject_rows", table, f"{len(missing)} subject(s) with volumes but no row: {missing[:5]}"
        )
        if repair:
            write_rows(table, [{"obs_subject_id": s, "obs_id": s} for s in missing], ctx=ctx)
            f.repaired = True
