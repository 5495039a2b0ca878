"""TorchIO bridge: store subjects as lazy ``torchio.Subject``s for ``tio.Queue`` and samplers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from radiobject_adapter.data.datasets import LabelSource, VolumeCollectionDataset
from radiobject_adapter.io.ingest import DEFAULT_LABEL_COLLECTIONS
from radiobject_adapter.store.collection import VolumeCollection
from radiobject_adapter.volume import Volume

__all__ = ["VolumeCollectionSubjectsDataset", "VolumeReader"]


class VolumeReader:
    """A TorchIO ``reader``: loads one store volume as ``(tensor[1, X, Y, Z], affine)``.

    TorchIO calls it with the image's ``path``; the volume is bound here instead, because
    ``pathlib`` would mangle ``s3://`` URIs.
    """

    def __init__(self, uri: str, dtype: str) -> None:
        self.uri, self.dtype = uri, dtype

    def __call__(self, _path: Any) -> tuple[torch.Tensor, np.ndarray]:
        vol = Volume(self.uri)
        return torch.from_numpy(vol.to_numpy().astype(self.dtype)[None]), vol.affine


def _subjects_dataset_class() -> type:
    # TorchIO is an extra: the rest of the data layer works without it (tests/test_package_face.py)
    try:
        import torchio as tio
    except ImportError as err:
        raise ImportError(
            "VolumeCollectionSubjectsDataset needs TorchIO, which is not installed: "
            "pip install 'radiobundles[torchio]' (or use VolumeCollectionDataset / SegmentationDataset)"
        ) from err
    return tio.SubjectsDataset


class VolumeCollectionSubjectsDataset(_subjects_dataset_class()):  # type: ignore[misc]
    """A ``tio.SubjectsDataset`` of store subjects; voxels load lazily, per subject.

    Each collection becomes an image named after it: collections named like labels (seg,
    label, mask...) or listed in ``label_collections`` are ``LabelMap``s, the others
    ``ScalarImage``s, with the volume's affine.

    Args:
        collections: the collections (same subjects and shapes).
        labels: per-volume targets as for :class:`VolumeCollectionDataset`, in ``subject["label"]``.
        transform: a TorchIO transform applied to each subject.

    Example:
        >>> import torchio as tio
        >>> subjects = VolumeCollectionSubjectsDataset([radi.CT, radi.seg])
        >>> queue = tio.Queue(subjects, max_length=16, samples_per_volume=4,
        ...                   sampler=tio.LabelSampler(32, label_name="seg"), num_workers=0)
    """

    def __init__(
        self,
        collections: VolumeCollection | Sequence[VolumeCollection],
        labels: LabelSource = None,
        transform: Any = None,
        label_collections: Sequence[str] | None = None,
    ) -> None:
        import torchio as tio

        cols = [collections] if isinstance(collections, VolumeCollection) else list(collections)
        label_names = set(label_collections) if label_collections is not None else DEFAULT_LABEL_COLLECTIONS
        volumes = VolumeCollectionDataset(cols, labels=labels)
        subjects = []
        for index, rec in enumerate(volumes.records):
            images: dict[str, Any] = {}
            for col, vol in zip(cols, rec["images"]):
                is_label = col.name in label_names
                kind = tio.LabelMap if is_label else tio.ScalarImage
                reader = VolumeReader(vol.uri, "int64" if is_label else "float32")
                images[col.name] = kind(path=vol.obs_id or vol.uri, reader=reader, verify_path=False)
            target = volumes.target_for(index)
            extra = {"label": target} if target is not None else {}
            subjects.append(
                tio.Subject(**images, subject_id=rec["extra"]["subject_id"], obs_id=rec["images"][0].obs_id, **extra)
            )
        super().__init__(subjects, transform=transform)

    def __getitem__(self, index: int) -> Any:
        import torchio as tio

        lazy = self._subjects[index]
        # Eager images: TorchIO's crops re-create images from their path, which must exist on
        # disk; built from tensors they carry no path, so samplers and transforms just work.
        fields: dict[str, Any] = {}
        for key, value in lazy.items():
            if isinstance(value, tio.Image):
                tensor, affine = value.reader(value.path)
                fields[key] = type(value)(tensor=tensor, affine=affine)
            else:
                fields[key] = value
        subject = tio.Subject(**fields)
        return self._transform(subject) if self._transform is not None else subject
