"""A string that names one volume, so MONAI datalists can point into a store.

Form: ``<store URI>#<collection>/<subject id or obs_id>``, for example::

    /data/ct_store#CT/case_001
    s3://bucket/stores/ct#seg/case_001

A bare array URI (``<store>/collections/CT/volumes/3``) is accepted too.

Formatting and parsing only: this module imports nothing of the store, so the store can
format addresses; :func:`radiobject_adapter.store.resolve.resolve_volume` opens one.

Example:
    >>> addr = volume_address("/data/ct_store", "CT", "case_001")
    >>> parse_address(addr).key
    'case_001'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VolumeAddress", "is_volume_address", "parse_address", "volume_address"]

SEPARATOR = "#"


@dataclass(frozen=True)
class VolumeAddress:
    """The parts of a volume address."""

    store: str
    collection: str
    key: str

    def __str__(self) -> str:
        return f"{self.store.rstrip('/')}{SEPARATOR}{self.collection}/{self.key}"


def volume_address(store: str, collection: str, key: str) -> str:
    """Format the address of ``key`` (subject id or obs_id) in ``collection`` of ``store``."""
    if SEPARATOR in str(store):
        raise ValueError(f"store URI {store!r} may not contain {SEPARATOR!r}")
    if "/" in collection:
        raise ValueError(f"collection name {collection!r} may not contain '/'")
    return str(VolumeAddress(str(store), collection, key))


def is_volume_address(text: object) -> bool:
    return isinstance(text, str) and SEPARATOR in text and "/" in text.rsplit(SEPARATOR, 1)[1]


def parse_address(text: str) -> VolumeAddress:
    """Split an address into store, collection and key; raises ``ValueError`` if malformed."""
    if not is_volume_address(text):
        raise ValueError(
            f"{text!r} is not a volume address; expected '<store>#<collection>/<subject id>', "
            "e.g. '/data/store#CT/case_001'"
        )
    store, rest = text.rsplit(SEPARATOR, 1)
    collection, key = rest.split("/", 1)
    if not store or not collection or not key:
        raise ValueError(f"{text!r}: store, collection and subject id must all be non-empty")
    return VolumeAddress(store, collection, key)
