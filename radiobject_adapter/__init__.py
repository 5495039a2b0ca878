"""radiobject_adapter — a TileDB data layer for MONAI: store, partial reads, reader, datasets.

Example:
    >>> from radiobject_adapter import RadiObject
    >>> radi = RadiObject.from_niftis("store", images={"CT": "imagesTr/", "seg": "labelsTr/"})
    >>> radi.CT["case_001"].axial(40).shape
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from radiobject_adapter.data import _HOMES as _DATA_HOMES  # a name table only: no torch
from radiobject_adapter.s3env import apply_s3_env

# The package face is lazy (PEP 562): ``import radiobject_adapter`` costs TileDB only, so the
# ``radiobundles`` command and the store API start without torch, MONAI or TorchIO. A name is
# imported from its home module the first time it is used (``radiobject_adapter.TileDBReader``
# also from MONAI's ``LoadImage(reader="radiobject_adapter.TileDBReader")``).
_HOMES: dict[str, str] = {
    "VolumeAddress": "radiobject_adapter.address",
    "collection_address": "radiobject_adapter.address",
    "parse_address": "radiobject_adapter.address",
    "resolve_volume": "radiobject_adapter.store.resolve",
    "volume_address": "radiobject_adapter.address",
    "RadiobundlesError": "radiobject_adapter.errors",
    "ReadConfig": "radiobject_adapter.config",
    "S3Config": "radiobject_adapter.config",
    "WriteConfig": "radiobject_adapter.config",
    "configure": "radiobject_adapter.config",
    "ctx_for_process": "radiobject_adapter.config",
    "ctx_for_threads": "radiobject_adapter.config",
    "get_tiledb_config": "radiobject_adapter.config",
    "get_tiledb_ctx": "radiobject_adapter.config",
    "get_config": "radiobject_adapter.ctx",
    "Dataframe": "radiobject_adapter.dataframe",
    # the data layer's names, from the one table that says where each lives (minus the
    # low-level make_dataloader, which stays in radiobject_adapter.data)
    **{name: home for name, home in _DATA_HOMES.items() if name != "make_dataloader"},
    "TileDBReader": "radiobject_adapter.reader",
    "CacheStats": "radiobject_adapter.stats",
    "S3Stats": "radiobject_adapter.stats",
    "TileDBStats": "radiobject_adapter.stats",
    "VolumeCollection": "radiobject_adapter.store.collection",
    "IngestError": "radiobject_adapter.io.ingest",
    "IngestReport": "radiobject_adapter.io.ingest",
    "ingest_niftis": "radiobject_adapter.io.ingest",
    "FORMAT_VERSION": "radiobject_adapter.store.layout",
    "FormatVersionError": "radiobject_adapter.store.layout",
    "Tiling": "radiobject_adapter.store.layout",
    "subject_id_from_path": "radiobject_adapter.store.naming",
    "RadiObject": "radiobject_adapter.store.radiobject",
    "StoreNotFoundError": "radiobject_adapter.store.radiobject",
    "is_store": "radiobject_adapter.store.radiobject",
    "split_subjects": "radiobject_adapter.store.radiobject",
    "ingest_tifs": "radiobject_adapter.io.tif",
    "Volume": "radiobject_adapter.volume",
    "VolumeReadError": "radiobject_adapter.volume",
}

if TYPE_CHECKING:  # static tools see the names; the interpreter imports them on first use
    from radiobject_adapter.address import (
        VolumeAddress,
        collection_address,
        parse_address,
        volume_address,
    )
    from radiobject_adapter.config import (
        ReadConfig,
        S3Config,
        WriteConfig,
        configure,
        ctx_for_process,
        ctx_for_threads,
        get_tiledb_config,
        get_tiledb_ctx,
    )
    from radiobject_adapter.ctx import get_config
    from radiobject_adapter.data import (
        DatasetConfig,
        LoadingMode,
        SegmentationDataset,
        TileDBDataset,
        VolumeCollectionDataset,
        VolumeCollectionSubjectsDataset,
        create_inference_dataloader,
        create_segmentation_dataloader,
        create_training_dataloader,
        create_validation_dataloader,
    )
    from radiobject_adapter.dataframe import Dataframe
    from radiobject_adapter.errors import RadiobundlesError
    from radiobject_adapter.io.ingest import IngestError, IngestReport, ingest_niftis
    from radiobject_adapter.io.tif import ingest_tifs
    from radiobject_adapter.reader import TileDBReader
    from radiobject_adapter.stats import CacheStats, S3Stats, TileDBStats
    from radiobject_adapter.store.collection import VolumeCollection
    from radiobject_adapter.store.layout import FORMAT_VERSION, FormatVersionError, Tiling
    from radiobject_adapter.store.naming import subject_id_from_path
    from radiobject_adapter.store.radiobject import RadiObject, StoreNotFoundError, is_store, split_subjects
    from radiobject_adapter.store.resolve import resolve_volume
    from radiobject_adapter.volume import Volume, VolumeReadError


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'radiobject_adapter' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# A new interpreter (a bundle run, MONAI Label's server and its training subprocess, a spawned
# DataLoader worker) knows nothing of configure() calls made elsewhere: it takes its S3 endpoint,
# region and addressing from the environment (AWS_ENDPOINT_URL, AWS_REGION, ...; see s3env).
apply_s3_env()

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "CacheStats",
    "Dataframe",
    "DatasetConfig",
    "FormatVersionError",
    "IngestError",
    "IngestReport",
    "LoadingMode",
    "RadiObject",
    "RadiobundlesError",
    "ReadConfig",
    "S3Config",
    "S3Stats",
    "SegmentationDataset",
    "StoreNotFoundError",
    "TileDBDataset",
    "TileDBReader",
    "TileDBStats",
    "Tiling",
    "Volume",
    "VolumeAddress",
    "VolumeCollection",
    "VolumeCollectionDataset",
    "VolumeCollectionSubjectsDataset",
    "VolumeReadError",
    "WriteConfig",
    "__version__",
    "collection_address",
    "configure",
    "create_inference_dataloader",
    "create_segmentation_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "ctx_for_process",
    "ctx_for_threads",
    "get_config",
    "get_tiledb_config",
    "get_tiledb_ctx",
    "ingest_niftis",
    "ingest_tifs",
    "is_store",
    "parse_address",
    "resolve_volume",
    "split_subjects",
    "subject_id_from_path",
    "volume_address",
]
