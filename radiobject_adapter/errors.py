"""Every error radiobundles raises on purpose, under one base class.

Catch :class:`RadiobundlesError` to handle all of them. Each also subclasses the builtin it
has always been (``ValueError`` for bad input, ``FileNotFoundError`` for a missing store ...),
so existing ``except ValueError`` code keeps working. The messages say what is wrong and what
to do. The names stay importable from the modules that raise them
(``radiobject_adapter.io.ingest.IngestError`` ...) and from the package root.

Example:
    >>> from radiobject_adapter.errors import RadiobundlesError
    >>> try:
    ...     RadiObject("not_a_store")
    ... except RadiobundlesError as err:
    ...     print(err)
"""

from __future__ import annotations

__all__ = [
    "DicomSeriesError",
    "FormatVersionError",
    "IngestError",
    "LabelError",
    "RadiobundlesError",
    "S3EnvError",
    "StoreLocationError",
    "StoreNotFoundError",
    "VolumeReadError",
]


class RadiobundlesError(Exception):
    """Base class of the errors radiobundles raises on purpose."""


class IngestError(RadiobundlesError, ValueError):
    """The inputs cannot be ingested as given (nothing was written)."""


class LabelError(RadiobundlesError, ValueError):
    """A label cannot be stored for its image (wrong grid, classes or values); nothing was written."""


class DicomSeriesError(RadiobundlesError, ValueError):
    """A series that cannot be read as one regular volume (the message names it)."""

    def __init__(self, series_uid: str, message: str) -> None:
        super().__init__(f"DICOM series {series_uid}: {message}")
        self.series_uid = series_uid


class StoreNotFoundError(RadiobundlesError, FileNotFoundError):
    """The URI does not hold a radiobundles / RadiObject store."""


class StoreLocationError(RadiobundlesError, ValueError):
    """A store cannot be written at this location (the message says why and what to do)."""


class FormatVersionError(RadiobundlesError, RuntimeError):
    """The store was written by a newer radiobundles than this one."""


class VolumeReadError(RadiobundlesError, OSError):
    """A volume could not be read after retries; the message names the URI and the cause."""


class S3EnvError(RadiobundlesError, ValueError):
    """An S3 environment variable has a value that cannot be used (the message names it)."""
