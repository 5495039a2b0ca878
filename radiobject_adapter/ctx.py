"""radiobject's ``radiobject.ctx`` names: settings and the TileDB context of this process.

Everything here is :mod:`radiobject_adapter.config` under radiobject's names, so code written
for radiobject runs after renaming the package.

Example:
    >>> from radiobject_adapter.ctx import configure, ReadConfig, get_tiledb_ctx
    >>> configure(read=ReadConfig(max_workers=4, concurrency=4, memory_budget_mb=1024))
    >>> ctx = get_tiledb_ctx()
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import tiledb

from radiobject_adapter.config import (
    ReadConfig,
    S3Config,
    WriteConfig,
    _Settings,
    configure,
    ctx_for_process,
    ctx_for_threads,
    current_settings,
    get_tiledb_config,
    get_tiledb_ctx,
    reset_caches,
)

__all__ = [
    "IOConfig",
    "RadiObjectConfig",
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


def get_config() -> Any:
    """radiobject's ``get_config()``: the settings in force (``.read`` / ``.io``, ``.write``,
    ``.s3``, ``.to_tiledb_ctx()``), as :func:`RadiObjectConfig` makes them."""
    return current_settings()


IOConfig = ReadConfig  # radiobject's older name: IOConfig(max_workers=..., concurrency=...)


def RadiObjectConfig(  # radiobject's class name; ours returns a frozen settings record
    read: ReadConfig | None = None,
    write: WriteConfig | None = None,
    s3: S3Config | None = None,
    io: ReadConfig | None = None,
) -> Any:
    """radiobject's settings object: ``RadiObjectConfig(io=IOConfig(concurrency=4))``; its
    ``to_tiledb_ctx()`` gives a context of these settings without changing the process's.

    Example:
        >>> cfg = RadiObjectConfig(read=ReadConfig(concurrency=4))
        >>> Volume.from_numpy("v", data, ctx=cfg.to_tiledb_ctx())
    """
    base = _Settings()
    return replace(base, read=read or io or base.read, write=write or base.write, s3=s3 or base.s3)


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


class _CallableModule(types.ModuleType):
    """radiobject's package exports a function ``ctx`` where ours has this module: calling the
    module (``from radiobject_adapter import ctx; ctx()``) gives the context, as radiobject's
    does, and ``radiobject_adapter.ctx.configure`` keeps working."""

    def __call__(self) -> tiledb.Ctx:
        return get_tiledb_ctx()


sys.modules[__name__].__class__ = _CallableModule
