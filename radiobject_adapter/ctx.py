"""radiobject's ``radiobject.ctx`` names: settings and the TileDB context of this process.

Everything here is :mod:`radiobject_adapter.config` under radiobject's names, so code written
for radiobject runs after renaming the package.

Example:
    >>> from radiobject_adapter.ctx import configure, ReadConfig, get_tiledb_ctx
    >>> configure(read=ReadConfig(max_workers=4, concurrency=4, memory_budget_mb=1024))
    >>> ctx = get_tiledb_ctx()
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import tiledb

from radiobject_adapter.config import (
    ReadConfig,
    S3Config,
    WriteConfig,
    configure,
    ctx_for_process,
    ctx_for_threads,
    current_settings,
    get_tiledb_config,
    get_tiledb_ctx,
    reset_caches,
)

__all__ = [
    "ReadConfig",
    "S3Config",
    "SliceOrientation",
    "TileConfig",
    "WriteConfig",
    "configure",
    "ctx",
    "ctx_for_process",
    "ctx_for_threads",
    "get_config",
    "get_radiobject_config",
    "get_tiledb_config",
    "get_tiledb_ctx",
    "reset_radiobject_config",
]


def ctx() -> tiledb.Ctx:
    """radiobject 0.1.1's name for :func:`get_tiledb_ctx`."""
    return get_tiledb_ctx()


def get_radiobject_config():
    """The settings in force (``.read``, ``.write``, ``.s3``): radiobject's name for
    :func:`~radiobject_adapter.config.current_settings`."""
    return current_settings()


def get_config() -> WriteConfig:
    """radiobject 0.1.1's ``get_config()``: the write settings."""
    return current_settings().write


def reset_radiobject_config() -> None:
    """Back to the default settings (radiobject's name)."""
    configure(read=ReadConfig(), s3=S3Config(), write=WriteConfig(), extra={})
    reset_caches()


class SliceOrientation(str, Enum):
    """radiobject's tile orientations (the ``tile_orientation`` of a volume)."""

    AXIAL = "axial"
    SAGITTAL = "sagittal"
    CORONAL = "coronal"
    ISOTROPIC = "isotropic"


@dataclass(frozen=True)
class TileConfig:
    """radiobject's tiling of arrays built with its calls: ``orientation`` and, for
    ``ISOTROPIC``, the tile extents ``x``/``y``/``z`` (default 64, radiobject's).

    Example:
        >>> configure(tile=TileConfig(orientation=SliceOrientation.SAGITTAL))
    """

    orientation: SliceOrientation = SliceOrientation.AXIAL
    x: int | None = None
    y: int | None = None
    z: int | None = None
    t: int = 1

    def tiling(self):
        """Our :class:`~radiobject_adapter.store.layout.Tiling` for this configuration."""
        from radiobject_adapter.store.layout import Tiling

        strategy = SliceOrientation(self.orientation).value
        if strategy == "isotropic":
            return Tiling(strategy, (self.x or 64, self.y or 64, self.z or 64))
        return Tiling(strategy)
