"""Where paired images live (TIF folders or store collections) and how pairs are matched.

A data root is either a folder with one sub-folder of TIF files per kind
(``data/edente/img_001.tif``, ``data/dente/img_001.tif``) or a TileDB store whose
collections have those names (``radiobundles ingest store -c edente=data/edente ...``).
Images pair by name: the file name without extension, or the subject id in the store.

A name present on one side only is never dropped silently: :func:`pair_sources` raises
:class:`UnpairedImagesError` naming them, unless asked to keep the intersection, and even
then it logs which names were left out.

Example:
    >>> report = pair_sources(open_source("data", "edente"), open_source("data", "dente"))
    >>> report.pairs[0]
    ('img_001', 'data/edente/img_001.tif', 'data/dente/img_001.tif')
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property

from radiobject_adapter.address import collection_address, volume_address
from radiobject_adapter.errors import RadiobundlesError
from radiobject_adapter.io.tif import TIF_SUFFIXES
from radiobject_adapter.store.naming import subject_id_from_path
from radiobject_adapter.store.radiobject import is_store

from .transforms import STORE_READER, TIF_READER

__all__ = ["ImageSource", "PairingReport", "UnpairedImagesError", "is_store", "open_source", "pair_sources"]

logger = logging.getLogger(__name__)


class UnpairedImagesError(RadiobundlesError, ValueError):
    """Some names exist in one folder (or collection) and not in the other."""


@dataclass(frozen=True)
class ImageSource:
    """The images of one kind: a folder of TIF files, or one collection of a store.

    Args:
        location: folder path, or store URI when ``collection`` is given.
        collection: the store collection; ``None`` for a folder.
    """

    location: str
    collection: str | None = None

    @property
    def reader(self) -> str:
        """The ``LoadImage`` reader (dotted path) for this source's items."""
        return TIF_READER if self.collection is None else STORE_READER

    @property
    def label(self) -> str:
        return self.location if self.collection is None else collection_address(self.location, self.collection)

    @cached_property
    def items(self) -> dict[str, str]:
        """``name -> file path or store address``, sorted by name."""
        if self.collection is not None:
            from radiobject_adapter.store.radiobject import RadiObject

            radi = RadiObject(self.location)
            ids = radi.collection(self.collection).subject_ids
            return {sid: volume_address(radi.uri, self.collection, sid) for sid in sorted(ids)}
        files = sorted(
            f for f in os.listdir(self.location) if f.lower().endswith(TIF_SUFFIXES) and not f.startswith(".")
        )
        out: dict[str, str] = {}
        for f in files:
            name = subject_id_from_path(f, channel_suffix=False)
            if name in out:
                raise ValueError(
                    f"{self.location}: {os.path.basename(out[name])!r} and {f!r} have the same name {name!r}"
                )
            out[name] = os.path.join(self.location, f)
        if not out:
            raise FileNotFoundError(f"{self.location}: no .tif/.tiff files")
        return out


def open_source(base: str, name: str) -> ImageSource:
    """The source called ``name`` under ``base`` (a sub-folder, or a collection when ``base`` is a store).

    Raises:
        FileNotFoundError: neither exists; the message lists what does.
    """
    base = os.fspath(base)
    if is_store(base):
        from radiobject_adapter.store.radiobject import RadiObject

        names = RadiObject(base).collection_names
        if name not in names:
            raise FileNotFoundError(f"store {base!r} has no collection {name!r}; collections: {list(names)}")
        return ImageSource(base, name)
    folder = os.path.join(base, name)
    if not os.path.isdir(folder):
        found = (
            sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))) if os.path.isdir(base) else []
        )
        raise FileNotFoundError(
            f"no folder {folder!r} (and {base!r} is not a store); sub-folders there: {found}. "
            "Expected <data>/<target>/*.tif and <data>/<condition>/*.tif"
        )
    return ImageSource(folder)


@dataclass
class PairingReport:
    """Matched pairs and the names found on one side only."""

    target: str
    condition: str
    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    only_target: list[str] = field(default_factory=list)
    only_condition: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p[0] for p in self.pairs]

    @property
    def complete(self) -> bool:
        return not self.only_target and not self.only_condition

    def summary(self, limit: int = 10) -> str:
        n_target = len(self.pairs) + len(self.only_target)
        n_condition = len(self.pairs) + len(self.only_condition)
        lines = [f"{self.target}: {n_target} images, {self.condition}: {n_condition} images, {len(self.pairs)} pairs"]
        for side, names in ((self.target, self.only_target), (self.condition, self.only_condition)):
            if names:
                more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
                lines.append(f"{len(names)} only in {side}: {names[:limit]}{more}")
        return "; ".join(lines)


def pair_sources(target: ImageSource, condition: ImageSource, keep_intersection: bool = False) -> PairingReport:
    """Match ``target`` and ``condition`` images by name.

    Args:
        target / condition: the two sources.
        keep_intersection: when some names are on one side only, keep the matched pairs
            (and log the others) instead of raising.

    Raises:
        UnpairedImagesError: names on one side only and ``keep_intersection`` is False.
    """
    t_items, c_items = target.items, condition.items
    report = PairingReport(
        target=target.label,
        condition=condition.label,
        pairs=[(n, t_items[n], c_items[n]) for n in sorted(set(t_items) & set(c_items))],
        only_target=sorted(set(t_items) - set(c_items)),
        only_condition=sorted(set(c_items) - set(t_items)),
    )
    if report.complete:
        return report
    if not keep_intersection:
        raise UnpairedImagesError(
            f"images do not pair up: {report.summary()}. Add or remove the files named, or pass "
            f"keep_intersection=True to train on the {len(report.pairs)} matched pairs"
        )
    if not report.pairs:
        raise UnpairedImagesError(f"no image names in common: {report.summary()}")
    logger.warning("keeping the %d matched pairs only: %s", len(report.pairs), report.summary())
    return report
