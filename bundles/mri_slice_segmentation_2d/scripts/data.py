"""How slices are read: single axial slices from an axially tiled store, or volumes cut into slices.

Datalists and source detection are shared with the other bundles
(:mod:`radiobundles.datalists`); this module adds what is particular to slice training.

Example:
    >>> slice_loading("/data/mri_store")                   # axially tiled store
    'slices'
    >>> slice_loading("/data/Task01")                      # nnU-Net NIfTI folder
    'volumes'
    >>> resolve_image_collection("/data/mri_store")        # the one non-label collection
    'T1w'
"""

from __future__ import annotations

import logging

from radiobject_adapter import RadiObject
from radiobject_adapter.io.ingest import DEFAULT_LABEL_COLLECTIONS
from radiobundles.datalists import detect_source

__all__ = ["LOADING_MODES", "resolve_image_collection", "slice_loading"]

LOADING_MODES = ("auto", "slices", "volumes")

logger = logging.getLogger(__name__)


def resolve_image_collection(dataset_dir: str, name: str = "auto") -> str:
    """The store's image collection: ``name``, or for ``"auto"`` the only non-label collection.

    NIfTI folders have no collections; ``name`` is returned unchanged for them.

    Raises:
        KeyError: ``name`` is not a collection of the store (the message lists them).
        ValueError: ``"auto"`` and the store has several image collections.
    """
    if detect_source(dataset_dir) != "store":
        return name
    store = RadiObject(dataset_dir)
    if name != "auto":
        store.collection(name)
        return name
    images = [c for c in store.collection_names if c not in DEFAULT_LABEL_COLLECTIONS]
    if len(images) != 1:
        raise ValueError(
            f"cannot guess the image collection of {store.uri!r} among {list(store.collection_names)}; "
            "pass --image_collection <name>"
        )
    return images[0]


def slice_loading(dataset_dir: str, image_collection_name: str = "auto", mode: str = "auto") -> str:
    """``"slices"`` when training reads single axial slices, else ``"volumes"``.

    ``mode="auto"`` reads slices from a store whose image volumes hold one axial slice per tile
    (``tiling="axial"``) and volumes otherwise (NIfTI folders, isotropically tiled stores).
    ``"slices"`` forces slice reads from any store (each read then decodes the tiles under the
    slice); ``"volumes"`` always loads whole volumes.

    Raises:
        ValueError: unknown mode, slices asked of a NIfTI folder, or an empty collection.
    """
    if mode not in LOADING_MODES:
        raise ValueError(f"loading mode must be one of {LOADING_MODES}, not {mode!r}")
    if mode == "volumes":
        return "volumes"
    if detect_source(dataset_dir) == "nifti":
        if mode == "slices":
            raise ValueError(
                f"{dataset_dir!r} is a NIfTI folder: single slices need a store; ingest it with "
                "`radiobundles ingest <store> -c CT=imagesTr -c seg=labelsTr --tiling axial` or use --loading_mode volumes"
            )
        return "volumes"
    store = RadiObject(dataset_dir)
    collection = store.collection(resolve_image_collection(dataset_dir, image_collection_name))
    depths = {volume.tile_shape[2] for volume in collection}
    if not depths:
        raise ValueError(f"collection {collection.name!r} of {store.uri!r} holds no volumes")
    if mode == "slices":
        if depths != {1}:
            logger.warning(
                f"{store.uri!r} is not axially tiled (tile depths {sorted(depths)}): each slice decodes whole tiles"
            )
        return "slices"
    return "slices" if depths == {1} else "volumes"
