"""radiobject_adapter — a TileDB data layer for MONAI: store, partial reads, reader, datasets.

Example:
    >>> from radiobject_adapter import RadiObject
    >>> radi = RadiObject.from_niftis("store", images={"CT": "imagesTr/", "seg": "labelsTr/"})
    >>> radi.CT["case_001"].axial(40).shape
"""

from __future__ import annotations

from radiobject_adapter.address import VolumeAddress, parse_address, resolve_volume, volume_address
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
from radiobject_adapter.reader import TileDBReader
from radiobject_adapter.s3env import apply_s3_env
from radiobject_adapter.stats import CacheStats, S3Stats, TileDBStats
from radiobject_adapter.store.collection import VolumeCollection
from radiobject_adapter.store.ingest import IngestError, IngestReport, ingest_niftis
from radiobject_adapter.store.layout import FORMAT_VERSION, FormatVersionError, Tiling
from radiobject_adapter.store.naming import subject_id_from_path
from radiobject_adapter.store.radiobject import RadiObject, StoreNotFoundError, split_subjects
from radiobject_adapter.store.tif import ingest_tifs
from radiobject_adapter.volume import Volume, VolumeReadError

# A new interpreter (a bundle run, MONAI Label's server and its training subprocess, a spawned
# DataLoader worker) knows nothing of configure() calls made elsewhere: it takes its S3 endpoint,
# region and addressing from the environment (AWS_ENDPOINT_URL, AWS_REGION, ...; see s3env).
apply_s3_env()

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "CacheStats",
    "DatasetConfig",
    "FormatVersionError",
    "IngestError",
    "IngestReport",
    "LoadingMode",
    "RadiObject",
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
    "configure",
    "create_inference_dataloader",
    "create_segmentation_dataloader",
    "create_training_dataloader",
    "create_validation_dataloader",
    "ctx_for_process",
    "ctx_for_threads",
    "get_tiledb_config",
    "get_tiledb_ctx",
    "ingest_niftis",
    "ingest_tifs",
    "parse_address",
    "resolve_volume",
    "split_subjects",
    "subject_id_from_path",
    "volume_address",
]
