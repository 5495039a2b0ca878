"""A string that names one volume (or one collection), so MONAI datalists can point into a store.

Form: ``<store URI>::<collection>/<subject id or obs_id>``, for example::

    /data/ct_store::CT/case_001
    s3://bucket/stores/ct::seg/case_001

``<store URI>::<collection>`` alone names a collection (``--dataset_dir /data/ct_store::CT``).
``::`` is the separator because MONAI bundle configs leave it alone in plain string values:
their resolver treats ``@`` (reference), ``$`` (expression) and ``%`` (macro) as special only
at the start of a value, and rewrites every ``#`` (its old id separator) to ``::``. The old
form ``<store>#<collection>/<id>`` is still read, so an old datalist, or one that went through a
bundle config (where it became the new form), names the same volume.
A bare array URI (``<store>/collections/CT/volumes/3``) is accepted too.

Formatting and parsing only: this module imports nothing of the store, so the store can
format addresses; :func:`radiobject_adapter.store.resolve.resolve_volume` opens one.

Example:
    >>> volume_address("/data/ct_store", "CT", "case_001")
    '/data/ct_store::CT/case_001'
    >>> parse_address("/data/ct_store#CT/case_001").key  # the old form
    'case_001'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LEGACY_SEPARATOR",
    "SEPARATOR",
    "VolumeAddress",
    "collection_address",
    "is_volume_address",
    "parse_address",
    "split_collection_address",
    "volume_address",
]

SEPARATOR = "::"
LEGACY_SEPARATOR = "#"  # read, never written: MONAI configs rewrite it to SEPARATOR


@dataclass(frozen=True)
class VolumeAddress:
    """The parts of a volume address."""

    store: str
    collection: str
    key: str

    def __str__(self) -> str:
        return f"{self.store.rstrip('/')}{SEPARATOR}{self.collection}/{self.key}"


def _check_store(store: str) -> str:
    for sep in (SEPARATOR, LEGACY_SEPARATOR):
        if sep in store:
            raise ValueError(f"store URI {store!r} may not contain {sep!r}; move or rename the store")
    return store.rstrip("/")


def collection_address(store: str, collection: str) -> str:
    """``<store>::<collection>``: one collection of a store (e.g. as a bundle's ``dataset_dir``).

    Example:
        >>> collection_address("s3://bucket/ct", "seg")
        's3://bucket/ct::seg'
    """
    if "/" in collection or SEPARATOR in collection:
        raise ValueError(f"collection name {collection!r} may not contain '/' or {SEPARATOR!r}")
    return f"{_check_store(str(store))}{SEPARATOR}{collection}"


def volume_address(store: str, collection: str, key: str) -> str:
    """Format the address of ``key`` (subject id or obs_id) in ``collection`` of ``store``."""
    return f"{collection_address(store, collection)}/{key}"


def _split(text: str) -> tuple[str, str] | None:
    """``(store, rest)`` at the new separator, else at the old one; ``None`` when neither occurs."""
    for sep in (SEPARATOR, LEGACY_SEPARATOR):
        if sep in text:
            store, rest = text.rsplit(sep, 1)
            return store, rest
    return None


def is_volume_address(text: object) -> bool:
    """True for ``<store>::<collection>/<id>`` (or the old ``#`` form)."""
    if not isinstance(text, str):
        return False
    parts = _split(text)
    return parts is not None and "/" in parts[1]


def split_collection_address(text: str) -> tuple[str, str | None]:
    """``(store, collection)`` of ``<store>::<collection>``; ``(text, None)`` for anything else.

    Example:
        >>> split_collection_address("/data/ct_store::CT")
        ('/data/ct_store', 'CT')
        >>> split_collection_address("/data/Task09_Spleen")
        ('/data/Task09_Spleen', None)
    """
    parts = _split(str(text))
    if parts is None or "/" in parts[1] or not parts[0] or not parts[1]:
        return str(text), None
    return parts


def parse_address(text: str) -> VolumeAddress:
    """Split an address into store, collection and key; raises ``ValueError`` if malformed."""
    if not is_volume_address(text):
        raise ValueError(
            f"{text!r} is not a volume address; expected '<store>{SEPARATOR}<collection>/<subject id>', "
            f"e.g. '/data/store{SEPARATOR}CT/case_001'"
        )
    store, rest = _split(text)  # type: ignore[misc]
    collection, key = rest.split("/", 1)
    if not store or not collection or not key:
        raise ValueError(f"{text!r}: store, collection and subject id must all be non-empty")
    return VolumeAddress(store, collection, key)
