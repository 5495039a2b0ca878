"""A DICOMweb server (e.g. Orthanc) as a source of series, and a place to store results.

:func:`pull_series` finds series (by StudyInstanceUID, SeriesInstanceUID, or a QIDO query
such as ``{"Modality": "CT", "StudyDate": "20260101-20261231"}``) and downloads their
instances (WADO-RS) into ``<folder>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``. Each file is
written under a temporary name and renamed when complete, and instances already there are
skipped, so an interrupted pull is resumed by running it again. The folder is then the DICOM
source of :func:`~radiobject_adapter.io.dicom_ingest.ingest_dicoms` (and of SEG output, which
references those files). :func:`store_instances` sends datasets back (STOW-RS).
dicomweb-client does the HTTP.

Example:
    >>> folders = pull_series("http://127.0.0.1:8042/dicom-web", "dicom_cache", query={"Modality": "CT"})
    >>> ingest_dicoms("store", {"CT": "dicom_cache"})
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tqdm.auto import tqdm

__all__ = ["find_series", "pull_series", "store_instances"]

_STUDY, _SERIES, _SOP = "0020000D", "0020000E", "00080018"


def _client(url: str) -> Any:
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=url.rstrip("/"))


def _value(item: Mapping[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def find_series(
    url: str,
    study_uids: Iterable[str] = (),
    series_uids: Iterable[str] = (),
    query: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """``(StudyInstanceUID, SeriesInstanceUID)`` pairs on the server chosen by UIDs and/or a QIDO query.

    Raises:
        ValueError: nothing chosen, or a given UID is not on the server.
    """
    client = _client(url)
    filters = dict(query or {})
    study_uids, series_uids = list(study_uids), list(series_uids)
    found: dict[tuple[str, str], None] = {}
    if not (study_uids or series_uids or filters):
        raise ValueError("choose what to pull: study UIDs, series UIDs or a query (e.g. Modality=CT)")
    for study in study_uids:
        hits = client.search_for_series(study_instance_uid=study, search_filters=filters or None)
        if not hits and not filters:
            raise ValueError(f"study {study} is not on {url}")
        found.update(dict.fromkeys((_value(h, _STUDY) or study, _value(h, _SERIES)) for h in hits))
    for series in series_uids:
        hits = client.search_for_series(search_filters={**filters, "SeriesInstanceUID": series})
        if not hits:
            raise ValueError(f"series {series} is not on {url}")
        found.update(dict.fromkeys((_value(h, _STUDY), _value(h, _SERIES)) for h in hits))
    if filters and not (study_uids or series_uids):
        hits = client.search_for_series(search_filters=filters)
        found.update(dict.fromkeys((_value(h, _STUDY), _value(h, _SERIES)) for h in hits))
    return list(found)


def pull_series(
    url: str,
    folder: str | os.PathLike,
    study_uids: Iterable[str] = (),
    series_uids: Iterable[str] = (),
    query: Mapping[str, str] | None = None,
    progress: bool = True,
) -> list[str]:
    """Download the chosen series into ``folder`` (resumable); returns one folder per series."""
    client = _client(url)
    chosen = find_series(url, study_uids, series_uids, query)
    if not chosen:
        raise ValueError(f"no series on {url} match {dict(query or {})}")
    plan: list[tuple[str, str, str, str]] = []
    for study, series in chosen:
        target = os.path.join(os.fspath(folder), study, series)
        for item in client.search_for_instances(study_instance_uid=study, series_instance_uid=series):
            plan.append((study, series, _value(item, _SOP), os.path.join(target, f"{_value(item, _SOP)}.dcm")))
    todo = [p for p in plan if not os.path.isfile(p[3])]
    with tqdm(
        total=len(plan), initial=len(plan) - len(todo), unit="file", desc="pull DICOMweb", disable=not progress
    ) as bar:
        for study, series, sop, path in todo:
            ds = client.retrieve_instance(study, series, sop)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.part"
            ds.save_as(tmp, write_like_original=False)
            os.replace(tmp, path)  # complete files only: a resumed pull trusts what is there
            bar.update(1)
    return sorted({os.path.dirname(p[3]) for p in plan})


def store_instances(url: str, datasets: Sequence[Any]) -> None:
    """Store datasets (e.g. a DICOM SEG) on the server with STOW-RS.

    Raises:
        RuntimeError: the server refused an instance (its failure reason in the message).
    """
    response = _client(url).store_instances(datasets=list(datasets))
    failed = response.get("00081198", {}).get("Value") if response else None
    if failed:
        raise RuntimeError(f"{url} refused {len(failed)} instance(s): {failed}")
