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
)
from radiobject_adapter.reader import TileDBReader
from radiobject_adapter.store.collection import VolumeCollection
from radiobject_adapter.store.ingest import IngestError, IngestReport, ingest_niftis
from radiobject_adapter.store.layout import FORMAT_VERSION, FormatVersionError, Tiling
from radiobject_adapter.store.naming import subject_id_from_path
from radiobject_adapter.store.radiobject import RadiObject, StoreNotFoundError, split_subjects
from radiobject_adapter.volume import Volume

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "FormatVersionError",
    "IngestError",
    "IngestReport",
    "RadiObject",
    "ReadConfig",
    "S3Config",
    "StoreNotFoundError",
    "TileDBReader",
    "Tiling",
    "Volume",
    "VolumeAddress",
    "VolumeCollection",
    "WriteConfig",
    "__version__",
    "configure",
    "ctx_for_process",
    "ctx_for_threads",
    "ingest_niftis",
    "parse_address",
    "resolve_volume",
    "split_subjects",
    "subject_id_from_path",
    "volume_address",
]
