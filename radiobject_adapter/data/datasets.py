"""Datasets over store volumes that read only what each item needs.

Three front doors, one engine:

* :class:`TileDBDataset` takes a MONAI-style datalist (``[{"image": addr, "label": addr}]``,
  as ``RadiObject.datalist`` makes), so a bundle or MONAI Label swaps the list and nothing else.
* :class:`VolumeCollectionDataset` takes collections (stacked as channels) and optional
  per-volume labels (classification targets).
* :class:`SegmentationDataset` takes an image and a mask collection, with label-driven
  patch sampling from the foreground index stored at ingest.

Items are dicts ``{"image": MetaTensor[C, ...], "label": ..., "obs_id": ..., "subject_id": ...}``
ready for MONAI dict transforms. Patch positions are drawn from the dataset's own random
state: fresh every epoch, different in every DataLoader worker (MONAI's ``worker_init_fn``
reseeds each worker), and reproducible from a seed.
"""

from __future__ import annotations

import bisect
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import set_rnd
from monai.transforms import Randomizable
from monai.utils import MAX_SEED
from torch.utils.data import Dataset

from radiobject_adapter.data.config import DatasetConfig, LoadingMode
from radiobject_adapter.data.labels import LabelSource, chosen_collections, resolve_labels
from radiobject_adapter.data.patches import patch_affine, read_patch, start_around, uniform_start
from radiobject_adapter.store.collection import VolumeCollection
from radiobject_adapter.store.foreground import ForegroundIndex
from radiobject_adapter.store.labels import ensure_foreground_index
from radiobject_adapter.store.resolve import resolve_volume
from radiobject_adapter.volume import Volume

__all__ = ["LabelSource", "SegmentationDataset", "TileDBDataset", "VolumeCollectionDataset"]

Transform = Callable[[dict[str, Any]], Any] | None


def _as_volume(item: Any) -> Volume:
    return item if isinstance(item, Volume) else resolve_volume(str(item))


def _as_volumes(item: Any) -> list[Volume]:
    items = item if isinstance(item, (list, tuple)) else [item]
    return [_as_volume(i) for i in items]


def _label_tensor(data: np.ndarray) -> np.ndarray:
    # torch has no uint16/uint32 arithmetic; uint8 and signed types pass through
    return data.astype(np.int32) if data.dtype in (np.uint16, np.uint32, np.uint64) else data


class TileDBDataset(Dataset, Randomizable):
    """A dataset over a MONAI-style datalist of volume addresses (or :class:`Volume` objects).

    Args:
        data: dicts with ``image`` (an address, or a list of them stacked as channels) and
            optionally ``label`` (a label-volume address); other keys are passed through.
        config: :class:`DatasetConfig` (mode, patch size, patches per volume, padding).
        transform: applied to each item (e.g. a MONAI ``Compose`` of dict transforms).
        image_transform / spatial_transform: applied before ``transform`` (seed-API names:
            the first on the image only, the second on image and label).
        foreground_sampling: draw ``PATCH`` centres from the label's foreground index.
        pos / neg: foreground / background odds, as ``RandCropByPosNegLabeld``.
        class_ratios: per-class odds, background first, as ``RandCropByLabelClassesd``.
        foreground_threshold: with ``foreground_sampling``, the least fraction of labelled
            voxels a patch drawn around a foreground voxel must hold; one with less is drawn
            again, up to ``foreground_max_retries`` times, then kept (RadiObject's parameters).
            Each check reads the label patch. ``None`` (default) keeps the first draw: a patch
            centred on a foreground voxel always holds foreground.

    Example:
        >>> train = RadiObject("store").datalist(image="CT", label="seg", split="train")
        >>> ds = TileDBDataset(train, DatasetConfig(loading_mode="patch", patch_size=(64, 64, 64)),
        ...                    foreground_sampling=True, pos=2, neg=1)
        >>> ds[0]["image"].shape   # torch.Size([1, 64, 64, 64])

    Batches: a DataLoader fetches whole batches through :meth:`__getitems__`, which reads the
    items with ``config.read_threads`` threads (default 2), same items as one at a time.

    Subclassing: override :meth:`load_sample` (one record, a sub-index and an optional patch
    start to a dict of arrays) or :meth:`target_for` (per-volume class labels); the base class keeps the
    sampling, padding, affines and transforms.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        config: DatasetConfig | None = None,
        transform: Transform = None,
        image_transform: Transform = None,
        spatial_transform: Transform = None,
        foreground_sampling: bool = False,
        pos: float = 1.0,
        neg: float = 1.0,
        class_ratios: Sequence[float] | None = None,
        foreground_threshold: float | None = None,
        foreground_max_retries: int = 10,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        self.config = config or DatasetConfig()
        self.transform = transform
        self.image_transform = image_transform
        self.spatial_transform = spatial_transform
        self.foreground_sampling = foreground_sampling
        self.pos, self.neg = float(pos), float(neg)
        self.class_ratios = list(class_ratios) if class_ratios is not None else None
        if foreground_threshold is not None and not 0.0 <= foreground_threshold <= 1.0:
            raise ValueError(f"foreground_threshold is a fraction in [0, 1], got {foreground_threshold}")
        if foreground_max_retries < 0:
            raise ValueError(f"foreground_max_retries must be >= 0, got {foreground_max_retries}")
        self.foreground_threshold = foreground_threshold
        self.foreground_max_retries = int(foreground_max_retries)
        self.image_key, self.label_key = image_key, label_key
        if foreground_sampling and self.config.loading_mode is not LoadingMode.PATCH:
            raise ValueError("foreground_sampling needs LoadingMode.PATCH (it chooses patch positions)")
        self.records = [self._make_record(item) for item in data]
        if foreground_sampling and any(r["label"] is None for r in self.records):
            raise ValueError("foreground_sampling needs a label volume in every item")
        self._foreground: dict[int, ForegroundIndex] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid: int | None = None
        self._slice_offsets = self._count_slices() if self.config.loading_mode is LoadingMode.SLICE_2D else None
        self.set_random_state(seed=self.config.seed if self.config.seed is not None else np.random.randint(MAX_SEED))

    # -- records ------------------------------------------------------------------------
    def _make_record(self, item: Mapping[str, Any]) -> dict[str, Any]:
        images = _as_volumes(item[self.image_key])
        label = _as_volume(item[self.label_key]) if item.get(self.label_key) is not None else None
        shapes = {tuple(v.shape[:3]) for v in images} | ({tuple(label.shape[:3])} if label is not None else set())
        if len(shapes) > 1:
            names = [v.obs_id for v in images] + ([label.obs_id] if label is not None else [])
            raise ValueError(
                f"volumes of one item must share a shape, got {sorted(shapes)} for {names}; "
                "resample them onto one grid before stacking"
            )
        extra = {k: v for k, v in item.items() if k not in (self.image_key, self.label_key)}
        return {"images": images, "label": label, "extra": extra}

    def _count_slices(self) -> list[int]:
        offsets, total = [], 0
        for rec in self.records:
            offsets.append(total)
            total += rec["images"][0].shape[self.config.slice_axis]
        offsets.append(total)
        return offsets

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> TileDBDataset:
        super().set_random_state(seed, state)
        for t in (self.transform, self.image_transform, self.spatial_transform):
            if t is not None:  # MONAI's worker seeding stops at the dataset: pass it on
                set_rnd(t, int(self.R.randint(MAX_SEED)))
        return self

    def randomize(self, data: Any = None) -> None:  # Randomizable's abstract hook; sampling is per item
        return None

    # -- indexing -----------------------------------------------------------------------
    def __len__(self) -> int:
        mode = self.config.loading_mode
        if mode is LoadingMode.PATCH:
            return len(self.records) * self.config.patches_per_volume
        if mode is LoadingMode.SLICE_2D:
            return self._slice_offsets[-1]
        return len(self.records)

    def _locate(self, index: int) -> tuple[int, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        mode = self.config.loading_mode
        if mode is LoadingMode.PATCH:
            return divmod(index, self.config.patches_per_volume)
        if mode is LoadingMode.SLICE_2D:
            rec = bisect.bisect_right(self._slice_offsets, index) - 1
            return rec, index - self._slice_offsets[rec]
        return index, 0

    def __getitem__(self, index: int) -> Any:
        rec_index, sub = self._locate(int(index))
        return self._transformed(self.load_sample(rec_index, sub))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """The items of one batch (PyTorch's DataLoader calls this instead of ``ds[i]`` per item).

        Patch positions are drawn here, in order, and the transforms run here, in order, so a
        seed gives the same batch as ``[ds[i] for i in indices]``; only the reads go to
        ``config.read_threads`` threads (TileDB releases the GIL while it reads), the part that
        waits on decompression and I/O.
        """
        if self.config.read_threads <= 1 or len(indices) <= 1:
            return [self[i] for i in indices]
        plans = []
        for index in indices:
            rec_index, sub = self._locate(int(index))
            start = self.patch_start(rec_index) if self.config.loading_mode is LoadingMode.PATCH else None
            plans.append((rec_index, sub, start))
        samples = list(self._reader_pool().map(lambda plan: self.load_sample(*plan), plans))
        return [self._transformed(sample) for sample in samples]

    def _transformed(self, sample: dict[str, Any]) -> Any:
        for t in (self.image_transform, self.spatial_transform, self.transform):
            if t is not None:
                sample = t(sample)
        return sample

    def _reader_pool(self) -> ThreadPoolExecutor:
        # one pool per process: a forked DataLoader worker must not use its parent's threads
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self.config.read_threads, thread_name_prefix="tiledb-read")
            self._pool_pid = os.getpid()
        return self._pool

    def __getstate__(self) -> dict[str, Any]:  # spawned workers and copies: thread pools do not pickle
        return {**self.__dict__, "_pool": None, "_pool_pid": None}

    # -- reading ------------------------------------------------------------------------
    def foreground_index(self, rec_index: int) -> ForegroundIndex:
        """The label's foreground index (from ingest; built once for older stores)."""
        if rec_index not in self._foreground:
            self._foreground[rec_index] = ensure_foreground_index(self.records[rec_index]["label"])
        return self._foreground[rec_index]

    def patch_start(self, rec_index: int) -> tuple[int, ...]:
        """Where the next patch of this record starts (random; label-driven if asked)."""
        rec = self.records[rec_index]
        shape, size = rec["images"][0].shape[:3], self.config.patch_size
        if not self.foreground_sampling:
            return uniform_start(self.R, shape, size)
        index = self.foreground_index(rec_index)
        for _ in range(self.foreground_max_retries + 1):
            center, drawn_class = index.sample_center(self.R, self.pos, self.neg, self.class_ratios)
            start = start_around(center, shape, size)
            # background draws are meant to be background; the threshold judges foreground draws
            if not self.foreground_threshold or drawn_class == 0:
                break
            label = read_patch(rec["label"], start, size, "constant", 0)
            if np.count_nonzero(label) >= self.foreground_threshold * label.size:
                break
        return start

    def _meta(self, vol: Volume, affine: np.ndarray, spatial_shape: Sequence[int]) -> dict[str, Any]:
        return {
            "affine": torch.as_tensor(affine, dtype=torch.float64),
            "original_affine": torch.as_tensor(vol.affine, dtype=torch.float64),
            "spatial_shape": np.asarray(spatial_shape),
            "filename_or_obj": vol.uri,
            "obs_id": vol.obs_id or "",
        }

    def _image(self, arrays: list[np.ndarray], meta: dict[str, Any]) -> MetaTensor:
        data = np.stack(arrays)
        if self.config.image_dtype is not None:
            data = data.astype(self.config.image_dtype, copy=False)
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(data)), meta=meta)

    def _label(self, array: np.ndarray, meta: dict[str, Any]) -> MetaTensor:
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(_label_tensor(array)[None])), meta=dict(meta))

    def load_sample(self, rec_index: int, sub_index: int, start: Sequence[int] | None = None) -> dict[str, Any]:
        """Read one item: a whole volume, a patch (at ``start``, else drawn), or a slice."""
        rec = self.records[rec_index]
        images, label = rec["images"], rec["label"]
        first = images[0]
        mode, cfg = self.config.loading_mode, self.config
        out: dict[str, Any] = {}
        if mode is LoadingMode.PATCH:
            start = tuple(start) if start is not None else self.patch_start(rec_index)
            size = cfg.patch_size
            meta = self._meta(first, patch_affine(first.affine, start), size)
            out["image"] = self._image([read_patch(v, start, size, cfg.pad_mode, cfg.pad_value) for v in images], meta)
            if label is not None:
                out["label"] = self._label(read_patch(label, start, size, "constant", 0), meta)
            out["patch_start"] = np.asarray(start)
        elif mode is LoadingMode.SLICE_2D:
            axis = cfg.slice_axis
            kept = [a for a in range(3) if a != axis]
            start = [0, 0, 0]
            start[axis] = sub_index
            affine3 = patch_affine(first.affine, start)
            affine2 = affine3[np.ix_([*kept, 3], [*kept, 3])]  # in-plane part of the slice affine
            meta = self._meta(first, affine2, [first.shape[a] for a in kept])
            meta["slice_affine_3d"] = torch.as_tensor(affine3)
            out["image"] = self._image([v.plane(axis, sub_index) for v in images], meta)
            if label is not None:
                out["label"] = self._label(label.plane(axis, sub_index), meta)
            out["slice_index"] = sub_index
        else:
            meta = self._meta(first, first.affine, first.shape[:3])
            out["image"] = self._image([v.to_numpy() for v in images], meta)
            if label is not None:
                out["label"] = self._label(label.to_numpy(), meta)
        out["obs_id"] = first.obs_id or ""
        out["subject_id"] = rec["extra"].get("subject_id", first.subject_id or "")
        for key, value in rec["extra"].items():
            out.setdefault(key, value)
        target = self.target_for(rec_index)
        if target is not None:
            out["label"] = target
        return out

    def target_for(self, rec_index: int) -> Any:
        """Per-volume class label (classification); ``None`` for segmentation."""
        return None


class VolumeCollectionDataset(TileDBDataset):
    """Volumes of one or more collections (stacked as channels), with optional class labels.

    Args:
        collections: a :class:`VolumeCollection` or several (same subjects and shapes), or a
            :class:`~radiobject_adapter.RadiObject`: its collections named in
            ``config.modalities`` (all of them when ``None``), as RadiObject's own dataset does.
            Given collections with ``config.modalities`` set, those named are used, in that order.
        config: :class:`DatasetConfig`.
        labels: per-volume targets: a column of the collection's ``obs`` or of the subject
            table, a DataFrame (``obs_id`` or ``obs_subject_id`` column/index plus one value
            column), a dict keyed by obs_id or subject id, or a callable ``obs_id -> label``.
            ``None`` takes ``config.label_column`` (a column name) if set.
        transform: MONAI dict transform applied to each item.

    Example:
        >>> radi = RadiObject("store")
        >>> ds = VolumeCollectionDataset([radi.T1w, radi.FLAIR], labels="diagnosis")
        >>> ds = VolumeCollectionDataset(radi, DatasetConfig(modalities=["T1w", "FLAIR"], label_column="diagnosis"))
    """

    def __init__(
        self,
        collections: VolumeCollection | Sequence[VolumeCollection],
        config: DatasetConfig | None = None,
        labels: LabelSource = None,
        transform: Transform = None,
        **kwargs: Any,
    ) -> None:
        config = config or DatasetConfig()
        cols = chosen_collections(collections, config.modalities)
        if labels is None:
            labels = config.label_column
        subjects = [s for s in cols[0].subject_ids if all(s in c.subject_ids for c in cols[1:])]
        missing = sorted(set().union(*(set(c.subject_ids) for c in cols)) - set(subjects))
        if missing:
            warnings.warn(
                f"{len(missing)} subject(s) lack a volume in some collection and are left out: {missing[:5]}",
                stacklevel=2,
            )
        data = [{"image": [c[s] for c in cols], "subject_id": s} for s in subjects]
        self.collections = cols
        super().__init__(data, config, transform, **kwargs)
        self._targets = self._resolve_labels(labels)

    def _resolve_labels(self, labels: LabelSource) -> list[Any] | None:
        obs_ids = [r["images"][0].obs_id for r in self.records]
        subjects = [r["extra"]["subject_id"] for r in self.records]
        return resolve_labels(labels, self.collections[0], obs_ids, subjects)

    def target_for(self, rec_index: int) -> Any:
        if self._targets is None:
            return None
        value = self._targets[rec_index]
        return value.item() if hasattr(value, "item") else value


class SegmentationDataset(TileDBDataset):
    """Image and mask collections, items ``{"image", "label"}``, label-driven patches.

    Args:
        image: image collection (or several, stacked as channels).
        mask: label collection (returned under ``label``, MONAI's convention).
        config: :class:`DatasetConfig`.
        foreground_sampling: centre ``PATCH`` items on voxels drawn from the foreground
            index with odds ``pos``:``neg`` (or per-class ``class_ratios``), reading only
            the patch; ``foreground_threshold`` / ``foreground_max_retries`` as in
            :class:`TileDBDataset`.

    Example:
        >>> radi = RadiObject("store")
        >>> ds = SegmentationDataset(radi.CT, radi.seg, DatasetConfig(loading_mode="patch",
        ...     patch_size=(64, 64, 64), patches_per_volume=4), foreground_sampling=True)
    """

    def __init__(
        self,
        image: VolumeCollection | Sequence[VolumeCollection],
        mask: VolumeCollection,
        config: DatasetConfig | None = None,
        transform: Transform = None,
        foreground_sampling: bool = False,
        **kwargs: Any,
    ) -> None:
        cols = [image] if isinstance(image, VolumeCollection) else list(image)
        subjects = [s for s in cols[0].subject_ids if s in mask.subject_ids and all(s in c.subject_ids for c in cols)]
        if not subjects:
            raise ValueError(f"no subject has both an image in {[c.name for c in cols]} and a mask in {mask.name!r}")
        data = [{"image": [c[s] for c in cols], "label": mask[s], "subject_id": s} for s in subjects]
        super().__init__(data, config, transform, foreground_sampling=foreground_sampling, **kwargs)
