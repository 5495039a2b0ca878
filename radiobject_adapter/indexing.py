"""radiobject's ``radiobject.indexing``: :class:`Index`, a fixed two-way map between string
keys (obs_ids of a collection, subject ids of a store) and their positions.

``VolumeCollection.index`` (keys: :attr:`obs_ids`) and ``RadiObject.index`` (keys:
:attr:`obs_subject_ids`) return one, in the order the store lists them.

Example:
    >>> idx = Index.build(["sub-01", "sub-02"])
    >>> idx.get_index("sub-02"), idx.get_key(0), "sub-03" in idx
    (1, 'sub-01', False)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Index"]


@dataclass(frozen=True)
class Index:
    """Keys in order (:attr:`keys`) and each key's position (:attr:`key_to_idx`); immutable."""

    keys: tuple[str, ...]
    key_to_idx: Mapping[str, int]

    @classmethod
    def build(cls, keys: Iterable[str]) -> Index:
        """An index of ``keys`` (copied; each key once, else ``ValueError`` naming repeats)."""
        ordered = tuple(keys)
        repeated = [k for k, n in Counter(ordered).items() if n > 1]
        if repeated:
            raise ValueError(f"Duplicate keys detected: {repeated[:5]}; each key may appear once")
        return cls(keys=ordered, key_to_idx={k: i for i, k in enumerate(ordered)})

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self.key_to_idx

    def __iter__(self):
        return iter(self.keys)

    def get_index(self, key: str) -> int:
        """Position of ``key``; ``KeyError`` if absent."""
        try:
            return self.key_to_idx[key]
        except KeyError:
            raise KeyError(f"Key '{key}' not found in index of {len(self.keys)} keys") from None

    def get_key(self, idx: int) -> str:
        """Key at position ``idx`` (0 <= idx < len; no negative positions, as radiobject)."""
        if not 0 <= idx < len(self.keys):
            raise IndexError(f"Index {idx} out of range [0, {len(self.keys)})")
        return self.keys[idx]
