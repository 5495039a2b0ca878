"""2D TIF images into a store: one ``(H, W, 1)`` volume per file, resumable, with progress.

Each folder (or glob, list file, list of paths) becomes one collection. A file's subject id
is its name without the extension, *keeping* any numeric suffix (``img_0001.tif`` ->
``img_0001``): numbered TIF series are common and the NIfTI rule (drop a trailing
``_NNNN`` channel suffix) would merge them. A regular expression overrides the rule.

Images keep their native dtype and get an identity affine (TIF carries no patient
geometry). A file that cannot be read is reported in the :class:`IngestReport` and nothing
of it is written; files already in the store (same ``obs_id``) are skipped, so re-running
an interrupted ingest completes it.

Example:
    >>> report = ingest_tifs("store", {"edente": "data/edente", "dente": "data/dente"})
    >>> print(report.summary())
    >>> RadiObject("store").collection("dente")["img_001"].shape
    (256, 256, 1)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from radiobject_adapter.config import current_settings
from radiobject_adapter.io.ingest import (
    IngestError,
    IngestFailure,
    IngestReport,
    _write_subject_table,
    load_subject_table,
)
from radiobject_adapter.store.layout import Tiling, make_obs_id, obs_row
from radiobject_adapter.store.naming import discover_files, subject_id_from_path
from radiobject_adapter.store.writer import StoreWriter

__all__ = ["TIF_SUFFIXES", "ingest_tifs", "is_tif_spec", "load_tif", "tif_subject_id"]

TIF_SUFFIXES = (".tif", ".tiff")


def tif_subject_id(path: str | os.PathLike, pattern: str | None = None) -> str:
    """Subject id of a TIF file: its name without extension, or what ``pattern`` matches.

    Example:
        >>> tif_subject_id("data/dente/img_0001.tif")
        'img_0001'
        >>> tif_subject_id("scan-12_slice.tif", pattern=r"scan-(?P<subject>\\d+)")
        '12'
    """
    return subject_id_from_path(path, pattern, channel_suffix=False)  # img_0001 is a name, not a channel


def load_tif(path: str | os.PathLike) -> np.ndarray:
    """Read a single-page grayscale TIF as a 2D array (native dtype).

    Singleton axes are dropped, so ``(1, H, W)`` and ``(H, W, 1)`` pages read as ``(H, W)``.

    Raises:
        ValueError: empty, unreadable or corrupt file, not one 2D grayscale image, or NaN /
            Inf pixels; the message names the file and what to do.
    """
    import tifffile

    path = os.fspath(path)
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: empty file")
    try:
        data = tifffile.imread(path)
    except Exception as err:  # tifffile raises many types for damaged files
        raise ValueError(
            f"{path}: cannot read TIF ({type(err).__name__}: {err}); the file is corrupt, truncated or not a TIFF"
        ) from err
    data = np.squeeze(np.asarray(data))
    if data.size == 0:  # tifffile warns and returns nothing for a damaged page table
        raise ValueError(f"{path}: cannot read TIF (no image data found); the file is corrupt, truncated or not a TIFF")
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        raise ValueError(f"{path}: colour image of shape {data.shape}; export the slice as single-channel grayscale")
    if data.ndim != 2:
        raise ValueError(f"{path}: expected one 2D image, got shape {data.shape}; export one slice per file")
    if data.dtype.kind not in "iufb":
        raise ValueError(f"{path}: unsupported pixel type {data.dtype}; export as integer or float grayscale")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise ValueError(f"{path}: {bad} NaN/Inf pixel(s); fix the export (they would poison normalisation)")
    return np.ascontiguousarray(data)


def is_tif_spec(spec: Any) -> bool:
    """True when every file that ``spec`` names is a TIF (used by the CLI to pick the ingest).

    Example:
        >>> is_tif_spec("data/dente")        # a folder of .tif files
        True
    """
    files = discover_files(spec)
    return bool(files) and all(f.lower().endswith(TIF_SUFFIXES) for f in files)


def _collect(folders: Mapping[str, Any], subject_pattern: str | None) -> dict[str, dict[str, str]]:
    """``collection -> {subject: path}``; non-TIF files and duplicate ids are errors."""
    out: dict[str, dict[str, str]] = {}
    for collection, spec in folders.items():
        files = discover_files(spec)
        others = [f for f in files if not f.lower().endswith(TIF_SUFFIXES)]
        if others:
            raise IngestError(
                f"collection {collection!r}: {len(others)} file(s) are not TIF (e.g. {others[0]!r}); "
                "ingest NIfTI files with ingest_niftis"
            )
        seen: dict[str, str] = {}
        for path in files:
            sid = tif_subject_id(path, subject_pattern)
            if sid in seen:
                raise IngestError(
                    f"collection {collection!r}: files {seen[sid]!r} and {path!r} both map to subject {sid!r}; "
                    "rename one or pass a subject pattern"
                )
            seen[sid] = path
        out[collection] = seen
    return out


def _obs_row(collection: str, path: str, shape: Sequence[int]) -> dict[str, Any]:
    # a TIF has no geometry: unit voxels, identity affine (RAS)
    return obs_row(
        collection, shape, np.eye(4), os.path.abspath(path), spatial_units="unknown", orientation_source="identity"
    )


def ingest_tifs(
    uri: str,
    folders: Mapping[str, Any],
    obs_meta: pd.DataFrame | str | os.PathLike | None = None,
    subject_column: str | None = None,
    subject_pattern: str | None = None,
    tiling: str | Tiling = "axial",
    compression: str | None = None,
    compression_level: int | None = None,
    progress: bool = True,
) -> IngestReport:
    """Ingest 2D TIF images into the store at ``uri`` (created if missing).

    Args:
        uri: store location (local path or ``s3://``).
        folders: ``{collection: files}``; files as a folder, a glob, a list file or a list.
        obs_meta: subject table (CSV path or DataFrame) joined on subject id.
        subject_column: the table's subject id column (default: auto-detected).
        subject_pattern: regex for the subject id (group ``subject``, or group 1); default:
            the file name without extension.
        tiling: ``"axial"`` (default: the whole image is one tile) or another :class:`Tiling`.
        compression / compression_level: codec or filter pipeline (default from :func:`configure`:
            ``"byteshuffle+lz4"``).
        progress: show a progress bar (files done / total).

    Returns:
        An :class:`IngestReport`: written, already present, and rejected files (with reason).

    Raises:
        IngestError: no collections, non-TIF files, or two files with one subject id
            (nothing written).
    """
    if not folders:
        raise IngestError("no collections given; pass e.g. folders={'dente': 'data/dente'}")
    table = load_subject_table(obs_meta, subject_column) if obs_meta is not None else None
    by_collection = _collect(folders, subject_pattern)
    settings = current_settings().write
    writer = StoreWriter(
        uri,
        tiling=tiling if isinstance(tiling, Tiling) else Tiling(tiling),
        compression=compression or settings.compression,
        compression_level=compression_level if compression_level is not None else settings.compression_level,
    )
    report = IngestReport(store=writer.uri)
    total = sum(len(v) for v in by_collection.values())
    try:
        with tqdm(total=total, unit="file", desc="ingest tif", disable=not progress) as bar:
            for collection, files in by_collection.items():
                present = writer.existing_obs_ids(collection)
                for sid in sorted(files):
                    path = files[sid]
                    obs_id = make_obs_id(sid, collection)
                    if obs_id in present:
                        report.already_present.setdefault(collection, []).append(sid)
                        bar.update(1)
                        continue
                    try:
                        image = load_tif(path)
                    except (ValueError, OSError) as err:
                        report.failures.append(IngestFailure(sid, str(err), (path,)))
                        bar.update(1)
                        continue
                    volume = image[:, :, np.newaxis]
                    writer.write_volume(
                        collection,
                        sid,
                        obs_id,
                        volume,
                        np.eye(4),
                        meta={
                            "orientation_axcodes": "RAS",
                            "orientation_source": "identity",
                            "source_format": "tif",
                            "source_path": os.path.abspath(path),
                        },
                        obs_row=_obs_row(collection, path, volume.shape),
                    )
                    report.written.setdefault(collection, []).append(sid)
                    bar.update(1)
    finally:
        writer.close()
    report.repaired = {k: list(v) for k, v in writer.repaired.items()}
    writer.update_counters(list(by_collection))
    stored = [*report.written.values(), *report.already_present.values()]
    _write_subject_table(writer, sorted({s for ids in stored for s in ids}), table)
    return report
