"""radiobject's ``radiobject.ingest`` names its users call: finding NIfTI images (and their
labels) in folders, before building a store with ``RadiObject.from_niftis(images=...)``.

File discovery and subject ids are :mod:`radiobject_adapter.store.naming`'s (the same rules
as ``radiobundles ingest``): an image and a label pair up when their subject ids match.

Example:
    >>> sources = discover_nifti_pairs("imagesTr", "labelsTr")
    >>> sources[0].subject_id, sources[0].has_label
    ('lung_000', True)
    >>> RadiObject.from_niftis("store", images={
    ...     "CT": [(s.image_path, s.subject_id) for s in sources],
    ...     "seg": [(s.label_path, s.subject_id) for s in sources if s.has_label]})
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from radiobject_adapter.store.naming import discover_files, subject_id_from_path

__all__ = ["NiftiSource", "discover_nifti_pairs"]


@dataclass(frozen=True)
class NiftiSource:
    """One subject's image file and, if found, its label file."""

    image_path: Path
    subject_id: str
    label_path: Path | None = None

    @property
    def has_label(self) -> bool:
        return self.label_path is not None


def discover_nifti_pairs(
    image_dir: str | os.PathLike,
    label_dir: str | os.PathLike | None = None,
    subject_id_fn: Callable[[Path], str] | None = None,
) -> list[NiftiSource]:
    """The NIfTI images in ``image_dir``, each paired with the file of ``label_dir`` that has
    its subject id; ids from ``subject_id_fn(path)`` (default: the file name's subject id).

    Raises:
        FileNotFoundError: ``image_dir`` (or ``label_dir``) is not a folder.
        ValueError: two files of one folder give the same subject id.
    """

    def by_subject(folder: str | os.PathLike) -> dict[str, Path]:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"not a folder: {folder}")
        found: dict[str, Path] = {}
        for name in discover_files(folder):
            path = Path(name)
            sid = subject_id_fn(path) if subject_id_fn else subject_id_from_path(name)
            if sid in found:
                raise ValueError(f"{found[sid]} and {path} both give subject id {sid!r}; pass subject_id_fn")
            found[sid] = path
        return found

    images = by_subject(image_dir)
    labels = by_subject(label_dir) if label_dir is not None else {}
    return [NiftiSource(path, sid, labels.get(sid)) for sid, path in sorted(images.items())]
