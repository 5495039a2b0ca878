"""DICOM series into a store: subjects, collection rules, key tags, resume, progress.

The same :class:`~radiobject_adapter.store.writer.StoreWriter` as NIfTI ingest writes the
volumes (leases, kill-safe registration), every series of a subject is read and checked
before any of them is written, and subjects already in the store are skipped, so running
the same command again completes an interrupted ingest.

* Subject id: the ``PatientID`` tag by default, any other tag (``subject_tag="StudyInstanceUID"``),
  or a regular expression on the file path (group ``subject``, else group 1).
* Collections: ``{"CT": folder}`` puts every image series of the folder into ``CT``; with
  ``rules`` (see :class:`SeriesRule`, e.g. ``configs/dicom_rules.json``) only series matching a
  rule of that collection go there, so one folder can feed ``CT`` and ``PET``.
* Key tags (age, sex, study date, modality, series description, manufacturer) go to the
  subject table; ``identifying_tags=False`` leaves out those that identify a person (dates).

Example:
    >>> report = ingest_dicoms("store", {"CT": "dicom/"}, rules="configs/dicom_rules.json")
    >>> print(report.summary())
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
from tqdm.auto import tqdm

from radiobject_adapter.config import current_settings
from radiobject_adapter.io.dicom import DicomSeries, DicomSeriesError, is_dicom_file, load_dicom_series, scan_dicom
from radiobject_adapter.io.ingest import (
    IngestError,
    IngestFailure,
    IngestReport,
    _write_subject_table,
    load_subject_table,
)
from radiobject_adapter.store.layout import Tiling, make_obs_id
from radiobject_adapter.store.writer import StoreWriter

__all__ = ["KEY_TAGS", "SeriesRule", "ingest_dicoms", "is_dicom_spec", "load_rules", "subject_id_of_series"]

# subject table column -> DICOM keyword; True marks tags that identify a person
KEY_TAGS: dict[str, tuple[str, bool]] = {
    "patient_age": ("PatientAge", False),
    "patient_sex": ("PatientSex", False),
    "study_date": ("StudyDate", True),
    "modality": ("Modality", False),
    "series_description": ("SeriesDescription", False),
    "manufacturer": ("Manufacturer", False),
}


@dataclass(frozen=True)
class SeriesRule:
    """Which series belong to a collection: ``modality`` equal, ``series_description`` a regex
    searched case-insensitively; an absent field matches anything.

    Example:
        >>> SeriesRule("T1w", modality="MR", series_description=r"t1").matches(series)
    """

    collection: str
    modality: str | None = None
    series_description: str | None = None

    def matches(self, series: DicomSeries) -> bool:
        if self.modality is not None and series.modality.upper() != self.modality.upper():
            return False
        if self.series_description is not None:
            return re.search(self.series_description, series.description, re.IGNORECASE) is not None
        return True


def load_rules(rules: str | os.PathLike | Sequence[Mapping[str, str] | SeriesRule]) -> list[SeriesRule]:
    """Rules from a JSON file (``{"rules": [{"collection": ..., "modality": ..., ...}]}``) or a list."""
    if isinstance(rules, (str, os.PathLike)):
        with open(rules) as fh:
            doc = json.load(fh)
        items = doc["rules"] if isinstance(doc, dict) else doc
    else:
        items = list(rules)
    out = []
    for item in items:
        if isinstance(item, SeriesRule):
            out.append(item)
            continue
        unknown = set(item) - {"collection", "modality", "series_description", "comment"}
        if unknown or "collection" not in item:
            raise IngestError(f"DICOM rule {item!r}: needs 'collection', may have 'modality', 'series_description'")
        out.append(SeriesRule(item["collection"], item.get("modality"), item.get("series_description")))
    return out


def is_dicom_spec(spec: str | os.PathLike, probe: int = 64) -> bool:
    """``True`` when ``spec`` is a DICOM file or a folder holding DICOM files (first ``probe`` files looked at)."""
    path = os.fspath(spec)
    if os.path.isfile(path):
        return is_dicom_file(path)
    if not os.path.isdir(path):
        return False
    seen = 0
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            if is_dicom_file(os.path.join(folder, name)):
                return True
            seen += 1
            if seen >= probe:
                return False
    return False


def subject_id_of_series(
    series: DicomSeries, subject_tag: str = "PatientID", subject_pattern: str | None = None
) -> str:
    """Subject id of a series: a regex on its first file's path, else the value of ``subject_tag``."""
    if subject_pattern is not None:
        from radiobject_adapter.store.naming import match_subject

        path = series.files[0]
        subject = match_subject(subject_pattern, path)
        if subject is None:
            raise DicomSeriesError(series.uid, f"subject pattern {subject_pattern!r} does not match {path!r}")
        return subject
    value = series.tag(subject_tag).strip()
    if not value:
        raise DicomSeriesError(
            series.uid,
            f"no {subject_tag} ({series.label()}); choose another subject tag (e.g. StudyInstanceUID) or a pattern",
        )
    return value


def _assign(
    sources: Mapping[str, str | os.PathLike | Iterable[str]],
    rules: list[SeriesRule] | None,
    subject_tag: str,
    subject_pattern: str | None,
    report: IngestReport,
) -> dict[str, dict[str, DicomSeries]]:
    """``subject -> {collection: series}``; two series for one subject in a collection is an error."""
    scanned: dict[str, dict[str, DicomSeries]] = {}
    by_subject: dict[str, dict[str, DicomSeries]] = {}
    taken: set[str] = set()
    for collection, spec in sources.items():
        key = json.dumps([os.fspath(s) for s in spec] if isinstance(spec, (list, tuple)) else os.fspath(spec))
        if key not in scanned:
            scanned[key] = scan_dicom(spec)
        mine = [r for r in rules or [] if r.collection == collection]
        if rules is not None and not mine:
            raise IngestError(f"the DICOM rules name no collection {collection!r}; add a rule for it")
        for series in scanned[key].values():
            if rules is not None:
                first = next((r for r in rules if r.matches(series)), None)
                if first is None or first.collection != collection:
                    continue
            taken.add(series.uid)
            try:
                sid = subject_id_of_series(series, subject_tag, subject_pattern)
            except DicomSeriesError as err:
                report.failures.append(IngestFailure("?", str(err), tuple(series.files[:3])))
                continue
            other = by_subject.setdefault(sid, {}).get(collection)
            if other is not None:
                raise IngestError(
                    f"collection {collection!r}: subject {sid!r} has two series, {other.uid} ({other.label()}) "
                    f"and {series.uid} ({series.label()}); give DICOM rules (modality / series description) "
                    "that pick one per collection"
                )
            by_subject[sid][collection] = series
    for found in scanned.values():
        report.warnings.extend(
            f"series {s.uid} ({s.label()}) matches no DICOM rule of the requested collections: skipped"
            for s in found.values()
            if s.uid not in taken
        )
    return by_subject


def _tag_rows(loaded: Mapping[str, DicomSeries], identifying: bool) -> dict[str, str]:
    row: dict[str, str] = {}
    for column, (keyword, identifies) in KEY_TAGS.items():
        if identifies and not identifying:
            continue
        values = list(dict.fromkeys(s.tag(keyword) for _, s in sorted(loaded.items()) if s.tag(keyword)))
        row[column] = "; ".join(values)
    return row


def ingest_dicoms(
    uri: str,
    sources: Mapping[str, str | os.PathLike | Iterable[str]],
    rules: str | os.PathLike | Sequence[Mapping[str, str] | SeriesRule] | None = None,
    subject_tag: str = "PatientID",
    subject_pattern: str | None = None,
    identifying_tags: bool = True,
    obs_meta: pd.DataFrame | str | os.PathLike | None = None,
    subject_column: str | None = None,
    tiling: str | Tiling = "isotropic",
    tile_extent: int | tuple[int, int, int] | None = None,
    compression: str | None = None,
    compression_level: int | None = None,
    progress: bool = True,
) -> IngestReport:
    """Ingest DICOM series into the store at ``uri`` (created if missing), one volume per series.

    Args:
        uri: store location (local path or ``s3://``).
        sources: ``{collection: folder, file or list of them}``, searched recursively.
        rules: :class:`SeriesRule` list or a JSON file of them; ``None``: every image series of
            a collection's folder belongs to it.
        subject_tag / subject_pattern: where the subject id comes from (see module docstring).
        identifying_tags: ``False`` leaves the study date out of the subject table.
        obs_meta / subject_column: a user subject table joined on subject id (its columns win).
        tiling / tile_extent / compression / compression_level: as for :func:`ingest_niftis`.
        progress: show a progress bar (DICOM files done / total).

    Returns:
        An :class:`IngestReport`; a rejected series costs its subject, which is not written.
    """
    if not sources:
        raise IngestError("no collections given; pass e.g. sources={'CT': 'dicom/'}")
    rule_list = load_rules(rules) if rules is not None else None
    settings = current_settings().write
    tiling_obj = tiling if isinstance(tiling, Tiling) else Tiling(tiling, tile_extent)
    user_table = load_subject_table(obs_meta, subject_column) if obs_meta is not None else None
    report = IngestReport(store=str(uri).rstrip("/"))
    by_subject = _assign(sources, rule_list, subject_tag, subject_pattern, report)  # before any write
    writer = StoreWriter(
        uri,
        tiling=tiling_obj,
        compression=compression or settings.compression,
        compression_level=compression_level if compression_level is not None else settings.compression_level,
    )
    tag_rows: dict[str, dict[str, str]] = {}
    ingested: list[str] = []
    try:
        present = {name: writer.existing_obs_ids(name) for name in sources}
        n_files = sum(len(s.files) for series in by_subject.values() for s in series.values())
        with tqdm(total=n_files, unit="file", desc="ingest DICOM", disable=not progress) as bar:
            for sid in sorted(by_subject):
                series = by_subject[sid]
                todo = {c: s for c, s in series.items() if make_obs_id(sid, c) not in present[c]}
                for c in set(series) - set(todo):
                    report.already_present.setdefault(c, []).append(sid)
                    bar.update(len(series[c].files))
                try:
                    volumes = {c: load_dicom_series(s) for c, s in sorted(todo.items())}
                except (DicomSeriesError, OSError) as err:
                    files = tuple(f for s in todo.values() for f in s.files[:1])
                    report.failures.append(IngestFailure(sid, str(err), files))
                    bar.update(sum(len(s.files) for s in todo.values()))
                    continue
                for c, vol in volumes.items():
                    meta = vol.array_metadata()
                    meta["dicom_series_description"] = vol.series.description
                    meta["dicom_manufacturer"] = vol.series.tag("Manufacturer")
                    writer.write_volume(
                        c, sid, make_obs_id(sid, c), vol.data, vol.affine, meta=meta, obs_row=vol.obs_row(c)
                    )
                    report.written.setdefault(c, []).append(sid)
                    bar.update(len(todo[c].files))
                ingested.append(sid)
                tag_rows[sid] = _tag_rows(series, identifying_tags)
    finally:
        writer.close()
    # volumes a killed run registered without their obs row: rows written back from metadata
    report.repaired = {k: list(v) for k, v in writer.repaired.items()}
    writer.update_counters(list(sources))
    table = pd.DataFrame.from_dict(tag_rows, orient="index", dtype=str) if tag_rows else None
    if table is not None and user_table is not None:
        table = table.drop(columns=[c for c in user_table.columns if c in table.columns]).join(user_table)
    try:
        _write_subject_table(writer, ingested, table if table is not None else user_table)
    except ValueError as err:  # an earlier ingest made the subject table without these columns
        if user_table is not None:
            raise
        _write_subject_table(writer, ingested, None)
        report.warnings.append(f"DICOM tags not added to the subject table: {err}")
    return report
