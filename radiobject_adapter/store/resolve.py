"""Open the volume a volume address (or a bare array URI) names.

The address format lives in :mod:`radiobject_adapter.address`, which imports nothing of the
store (``RadiObject`` formats addresses); opening one needs the store, so it lives here.

Example:
    >>> from radiobject_adapter.address import volume_address
    >>> resolve_volume(volume_address("/data/ct_store", "CT", "case_001")).shape
"""

from __future__ import annotations

from functools import lru_cache

from radiobject_adapter.address import is_volume_address, parse_address
from radiobject_adapter.store.collection import VolumeCollection
from radiobject_adapter.store.radiobject import RadiObject
from radiobject_adapter.volume import Volume

__all__ = ["resolve_volume"]


@lru_cache(maxsize=64)
def _collection(store: str, name: str) -> VolumeCollection:  # one open listing per store/collection and process
    return RadiObject(store).collection(name)


def resolve_volume(text: str) -> Volume:
    """The :class:`Volume` behind an address (or a bare array URI).

    Listings are cached; a subject added since the last listing is found by one refresh.
    """
    if not is_volume_address(text):
        return Volume(text)
    addr = parse_address(text)
    collection = _collection(addr.store, addr.collection)
    try:
        return Volume(collection.uri_of(addr.key))
    except KeyError:
        return Volume(collection.refresh().uri_of(addr.key))
