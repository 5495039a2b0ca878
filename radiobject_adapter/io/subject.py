"""One subject of a NIfTI ingest: read and check all its files, then write them.

The unit of work the serial loop (:mod:`.ingest`) and the parallel engines
(:mod:`.parallel_ingest`) share, so neither imports the other at module level.

Example:
    >>> rules = SubjectRules(frozenset({"seg"}), {"seg": 2}, ("CT",), "reject", 1e-3)
    >>> loaded, warnings = load_subject("case_001", {"CT": "ct.nii.gz", "seg": "seg.nii.gz"}, rules)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from radiobject_adapter.io.nifti import LoadedVolume, load_nifti
from radiobject_adapter.store.foreground import ForegroundIndex
from radiobject_adapter.store.labels import LabelError, as_label_array, check_label_grid
from radiobject_adapter.store.layout import make_obs_id
from radiobject_adapter.store.writer import StoreWriter

__all__ = ["IngestFailure", "IngestReport", "SubjectRules", "load_subject", "write_subject"]


@dataclass(frozen=True)
class IngestFailure:
    subject_id: str
    reason: str
    paths: tuple[str, ...]


@dataclass
class IngestReport:
    """What an ingest did: volumes written, already present, and subjects rejected."""

    store: str
    written: dict[str, list[str]] = field(default_factory=dict)
    already_present: dict[str, list[str]] = field(default_factory=dict)
    # volumes found without their obs row (a killed ingest) whose row was written again
    repaired: dict[str, list[str]] = field(default_factory=dict)
    failures: list[IngestFailure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # subjects started again after the worker ingesting them died (parallel ingest)
    redone: list[str] = field(default_factory=list)

    @property
    def n_written(self) -> int:
        return sum(len(v) for v in self.written.values())

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        lines = [f"store: {self.store}"]
        for name in sorted(set(self.written) | set(self.already_present)):
            lines.append(
                f"  {name}: {len(self.written.get(name, []))} written, "
                f"{len(self.already_present.get(name, []))} already present"
            )
        for name, obs_ids in sorted(self.repaired.items()):
            lines.append(f"  {name}: obs rows restored from the stored volumes of {', '.join(obs_ids)}")
        if self.redone:
            lines.append(f"  redone after a worker died: {', '.join(self.redone)}")
        for f in self.failures:
            lines.append(f"  REJECTED {f.subject_id}: {f.reason} [{', '.join(f.paths)}]")
        lines.extend(f"  WARNING {w}" for w in self.warnings)
        return "\n".join(lines)


def _check_pair(image: LoadedVolume, label: LoadedVolume, atol: float) -> str | None:
    try:
        check_label_grid(
            label.data.shape[:3],
            label.affine,
            image.data.shape[:3],
            image.affine,
            atol,
            f" ({label.path} vs {image.path})",
        )
    except LabelError as err:
        return str(err)
    return None


def _nonfinite(vol: LoadedVolume) -> str | None:
    if vol.data.dtype.kind != "f":
        return None
    bad = int(np.count_nonzero(~np.isfinite(vol.data)))
    return f"{vol.path} has {bad} NaN/Inf voxel(s)" if bad else None


def _as_label(vol: LoadedVolume, max_label: int | None = None) -> LoadedVolume:
    """Labels are integer class maps: float labels with whole values become integers."""
    data = as_label_array(vol.data, max_label=max_label, where=f" {vol.path}")
    return vol if data is vol.data else vol.with_data(data)


@dataclass(frozen=True)
class SubjectRules:
    """What every subject of one ingest is checked against (picklable: workers get it)."""

    labels: frozenset[str]
    limits: Mapping[str, int | None]
    image_names: tuple[str, ...]
    nonfinite: str
    affine_atol: float


def load_subject(sid: str, files: Mapping[str, str], rules: SubjectRules) -> tuple[dict[str, LoadedVolume], list[str]]:
    """Read and check every file of one subject; returns the volumes and warnings.

    Raises:
        ValueError, OSError, EOFError: the subject is rejected (nothing of it may be written).
    """
    warnings: list[str] = []
    loaded = {c: load_nifti(p) for c, p in files.items()}
    for c in rules.labels & set(loaded):
        loaded[c] = _as_label(loaded[c], rules.limits[c])
    for c in set(loaded) - rules.labels:
        problem = _nonfinite(loaded[c])
        if problem and rules.nonfinite == "reject":
            raise ValueError(
                f"{problem}; fix the file, or ingest it as it is with --nonfinite report (nonfinite='report' in Python)"
            )
        if problem:
            warnings.append(f"{sid}: {problem}")
    ref = next((loaded[c] for c in rules.image_names if c in loaded), None)
    for c in rules.labels & set(loaded):
        problem = _check_pair(ref, loaded[c], rules.affine_atol) if ref is not None else None
        if problem:
            raise ValueError(problem)
    return loaded, warnings


def write_subject(
    writer: StoreWriter,
    sid: str,
    loaded: Mapping[str, LoadedVolume],
    todo: Mapping[str, str],
    labels: frozenset[str],
    members: Mapping[str, str] | None = None,
) -> list[str]:
    """Write the volumes of ``todo`` (collections not yet in the store); returns them in order.
    ``members``: collection -> the volume name handed out to this writer (concurrent writers)."""
    done = []
    for c in sorted(todo):
        vol = loaded[c]
        writer.write_volume(
            c,
            sid,
            make_obs_id(sid, c),
            vol.data,
            vol.affine,
            meta=vol.array_metadata(),
            obs_row=vol.obs_row(series_type=c),
            raw_meta=ForegroundIndex.compute(vol.data).to_metadata() if c in labels else None,
            member=(members or {}).get(c),
        )
        done.append(c)
    return done
