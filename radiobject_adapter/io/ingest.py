"""NIfTI files into a store: pairing, validation, progress, resume.

Each subject is read and checked completely (every collection's file, image/label
agreement) before any of its volumes is written, so a bad file costs only its own subject
and never leaves half of a subject behind. Subjects already in the store are skipped, so
re-running an interrupted ingest finishes it without duplicates; a volume whose ``obs`` row
a kill prevented gets the row from its stored metadata (``report.repaired``), not skipped.

Example:
    >>> report = ingest_niftis("store", {"CT": "imagesTr/", "seg": "labelsTr/"},
    ...                        obs_meta="subjects.csv", tiling="isotropic")
    >>> print(report.summary())
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from radiobject_adapter.config import current_settings
from radiobject_adapter.errors import IngestError
from radiobject_adapter.io.subject import (
    IngestFailure,
    IngestReport,
    SubjectRules,
    load_subject,
    write_subject,
)
from radiobject_adapter.store.dataframe import column_dtype
from radiobject_adapter.store.label_classes import parse_label_classes
from radiobject_adapter.store.layout import Tiling, make_obs_id
from radiobject_adapter.store.naming import discover_files, subject_id_from_path
from radiobject_adapter.store.writer import StoreWriter

__all__ = [
    "DEFAULT_LABEL_COLLECTIONS",
    "IngestError",
    "IngestFailure",
    "IngestReport",
    "SubjectRules",
    "ingest_niftis",
    "load_subject",
    "load_subject_table",
    "write_subject",
]

DEFAULT_LABEL_COLLECTIONS = frozenset({"seg", "label", "labels", "mask", "masks"})


def load_subject_table(table: pd.DataFrame | str | os.PathLike, subject_column: str | None = None) -> pd.DataFrame:
    """Read and check a subject table (CSV path or DataFrame); returns it indexed by subject id.

    The subject column is ``subject_column`` if given, else the first of ``obs_subject_id``,
    ``subject_id``, ``subject``. Blank or duplicate ids are an error naming them.
    """
    df = (
        pd.read_csv(table, dtype={subject_column: str} if subject_column else None)
        if not isinstance(table, pd.DataFrame)
        else table.copy()
    )
    candidates = [subject_column] if subject_column else ["obs_subject_id", "subject_id", "subject"]
    col = next((c for c in candidates if c in df.columns), None)
    if col is None:
        raise IngestError(
            f"subject table has no subject id column (looked for {candidates}); columns: {list(df.columns)}"
        )
    ids = df[col].astype("string").str.strip()
    blank = df.index[ids.isna() | (ids == "")].tolist()
    if blank:
        raise IngestError(f"subject table has {len(blank)} row(s) without a subject id (rows {blank[:5]})")
    dup = sorted(ids[ids.duplicated()].unique())
    if dup:
        raise IngestError(f"subject table lists these subject ids more than once: {dup[:10]}")
    df = df.drop(columns=[col])
    df.index = ids.astype(str)
    df.index.name = "obs_subject_id"
    if "obs_id" in df.columns:
        df = df.drop(columns=["obs_id"])
    return df


def _collect(images: Mapping[str, Any], subject_pattern: str | None) -> dict[str, dict[str, str]]:
    """``subject -> {collection: path}``; two files for one subject in a collection is an error."""
    by_subject: dict[str, dict[str, str]] = {}
    for collection, spec in images.items():
        seen: dict[str, str] = {}
        for path, sid in _files_and_subjects(spec, subject_pattern):
            if sid in seen:
                raise IngestError(
                    f"collection {collection!r}: files {seen[sid]!r} and {path!r} both map to subject "
                    f"{sid!r}; pass a subject pattern or one collection per channel"
                )
            seen[sid] = path
            by_subject.setdefault(sid, {})[collection] = path
    return by_subject


def _files_and_subjects(spec: Any, subject_pattern: str | None) -> list[tuple[str, str]]:
    """``(path, subject id)`` pairs of one collection: ids from the file names, or given as
    radiobject's ``[(path, subject_id), ...]`` lists."""
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(i, (list, tuple)) and len(i) == 2 for i in spec):
        pairs = []
        for path, sid in spec:
            if not os.path.isfile(os.fspath(path)):
                raise FileNotFoundError(f"no such file: {os.fspath(path)!r} (subject {sid!r})")
            pairs.append((os.fspath(path), str(sid)))
        return pairs
    return [(path, subject_id_from_path(path, subject_pattern)) for path in discover_files(spec)]


def ingest_niftis(
    uri: str,
    images: Mapping[str, Any],
    obs_meta: pd.DataFrame | str | os.PathLike | None = None,
    subject_column: str | None = None,
    subject_pattern: str | None = None,
    label_collections: Sequence[str] | None = None,
    tiling: str | Tiling = "isotropic",
    tile_extent: int | tuple[int, int, int] | None = None,
    compression: str | None = None,
    compression_level: int | None = None,
    affine_atol: float = 1e-3,
    nonfinite: str = "reject",
    max_label: int | None = None,
    label_classes: Sequence[str] | str | None = None,
    progress: bool = True,
    workers: int = 1,
    ray_address: str | None = None,
) -> IngestReport:
    """Ingest NIfTI files into the store at ``uri`` (created if missing).

    Args:
        uri: store location (local path or ``s3://``).
        images: ``{collection: files}``; files as a glob, a folder, a list file, a list, or
            a list of ``(path, subject_id)`` pairs (radiobject's form: ids given, not parsed).
        obs_meta: subject table (CSV path or DataFrame) joined on subject id.
        subject_column: the table's subject id column (default: auto-detected).
        subject_pattern: regex overriding the file-name rule (see :mod:`.naming`).
        label_collections: collections holding labels (checked against the images, stored
            as integers); default: those named seg/label/labels/mask/masks.
        tiling: ``"isotropic"`` (patch-friendly) or ``"axial"`` (slice-friendly), or a
            :class:`Tiling`; ``tile_extent`` sets the isotropic tile size.
        compression / compression_level: codec or filter pipeline (default from :func:`configure`:
            ``"byteshuffle+lz4"``; see :func:`~radiobject_adapter.store.layout.compression_filters`).
        affine_atol: largest allowed difference between image and label affines.
        nonfinite: images with NaN or Inf voxels are ``"reject"``-ed (default) or written
            and listed in ``report.warnings`` (``"report"``).
        max_label: highest class index a label may hold (e.g. 2 for background + 2
            classes); a label with larger values is rejected. ``None``: no limit, or the
            label classes the store declares.
        label_classes: class names by class value, background first (list or comma-separated),
            recorded on the label collection (bundles take their ``class_names`` from it); a
            label holding a class beyond them is rejected. A store that declares classes
            keeps them: later ingests check against them and may not declare others.
        progress: show a progress bar (files done / total).
        workers: subjects ingested at once, each in its own process (``concurrent.futures``);
            every worker writes through its own writer lease, a worker that dies has its
            subject redone (see :mod:`.parallel_ingest`).
        ray_address: run one Ray task per subject on this cluster instead (``"auto"``, an
            address, or ``"local"``: a local Ray with ``workers`` CPUs); needs ``ray``.

    Returns:
        An :class:`IngestReport`; rejected subjects are listed there, nothing of them written.
    """
    if not images:
        raise IngestError("no collections given; pass e.g. images={'CT': 'imagesTr/'}")
    if workers < 1:
        raise IngestError(f"workers must be 1 or more, not {workers}")
    if nonfinite not in ("reject", "report"):
        raise IngestError(f"nonfinite must be 'reject' or 'report', not {nonfinite!r}")
    settings = current_settings().write
    tiling_obj = tiling if isinstance(tiling, Tiling) else Tiling(tiling, tile_extent)
    labels = set(label_collections) if label_collections is not None else set(images) & DEFAULT_LABEL_COLLECTIONS
    unknown = labels - set(images)
    if unknown:
        raise IngestError(f"label collections {sorted(unknown)} are not among the inputs {sorted(images)}")
    try:
        classes = parse_label_classes(label_classes) if label_classes is not None else None
    except ValueError as err:
        raise IngestError(str(err)) from None
    if classes is not None and not labels:
        raise IngestError(
            f"--label-classes names the classes of a label collection, but none of {sorted(images)} is one; "
            "name it seg/label/labels/mask/masks or pass --label-collections"
        )
    if classes is not None and max_label is not None and max_label != len(classes) - 1:
        raise IngestError(
            f"--max-label {max_label} disagrees with {len(classes)} label classes {classes} (max {len(classes) - 1})"
        )
    table = load_subject_table(obs_meta, subject_column) if obs_meta is not None else None
    by_subject = _collect(images, subject_pattern)

    compression = compression or settings.compression
    compression_level = compression_level if compression_level is not None else settings.compression_level
    writer = StoreWriter(uri, tiling=tiling_obj, compression=compression, compression_level=compression_level)
    limits: dict[str, int | None] = {}
    try:
        for name in sorted(labels):
            declared = writer.declare_label_classes(name, classes)
            limits[name] = len(declared) - 1 if declared is not None and max_label is None else max_label
    except ValueError as err:
        writer.close()
        raise IngestError(str(err)) from None
    present = {name: writer.existing_obs_ids(name) for name in images}  # repairs missing rows
    report = IngestReport(store=writer.uri, repaired={k: list(v) for k, v in writer.repaired.items()})
    rules = SubjectRules(
        frozenset(labels), dict(limits), tuple(n for n in images if n not in labels), nonfinite, affine_atol
    )
    n_files = sum(len(v) for v in by_subject.values())
    ingested_subjects: list[str] = []
    pending: dict[str, tuple[dict[str, str], dict[str, str]]] = {}  # sid -> (all files, files to write)
    for sid in sorted(by_subject):
        files = by_subject[sid]
        todo = {c: p for c, p in files.items() if make_obs_id(sid, c) not in present[c]}
        for c in set(files) - set(todo):
            report.already_present.setdefault(c, []).append(sid)
        if todo:
            pending[sid] = (files, todo)
        else:
            ingested_subjects.append(sid)
    try:
        with tqdm(total=n_files, unit="file", desc="ingest", disable=not progress) as bar:
            bar.update(n_files - sum(len(files) for files, _ in pending.values()))
            if workers > 1 or ray_address:
                from radiobject_adapter.io.parallel_ingest import ingest_in_parallel

                ingested_subjects += ingest_in_parallel(
                    writer,
                    pending,
                    rules,
                    report,
                    bar,
                    workers=workers,
                    ray_address=ray_address,
                    compression=compression,
                    compression_level=compression_level,
                )
            else:
                for sid, (files, todo) in pending.items():
                    try:
                        loaded, warnings = load_subject(sid, files, rules)
                    except (ValueError, OSError, EOFError) as err:
                        report.failures.append(IngestFailure(sid, str(err), tuple(files.values())))
                        bar.update(len(files))
                        continue
                    report.warnings.extend(warnings)
                    for c in write_subject(writer, sid, loaded, todo, rules.labels):
                        report.written.setdefault(c, []).append(sid)
                        bar.update(1)
                    bar.update(len(files) - len(todo))
                    ingested_subjects.append(sid)
    finally:
        writer.close()
    writer.update_counters(list(images))
    _write_subject_table(writer, ingested_subjects, table)
    return report


def _write_subject_table(writer: StoreWriter, subjects: list[str], table: pd.DataFrame | None) -> None:
    if not subjects:
        return
    if table is None:
        # never blank out columns of subjects a previous ingest described
        known = set(writer.subject_table_ids())
        writer.write_subject_rows([{"obs_subject_id": s} for s in subjects if s not in known], columns={})
        return
    columns = {c: column_dtype(table[c]) for c in table.columns}
    rows = []
    for sid in subjects:
        values = table.loc[sid].to_dict() if sid in table.index else {}
        rows.append({"obs_subject_id": sid, **{c: values.get(c) for c in table.columns}})
    writer.write_subject_rows(rows, columns)
