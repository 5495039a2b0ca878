"""radiobject's ``radiobject.utils``: the affine as a nested list or JSON text, the form the
stores keep it in (``affine_json`` in a collection's ``obs``; array metadata).

Example:
    >>> affine_to_list(np.eye(4))[0]
    [1.0, 0.0, 0.0, 0.0]
    >>> np.array(json.loads(affine_to_json(np.eye(4)))).shape
    (4, 4)
"""

from __future__ import annotations

import numpy as np

from radiobject_adapter.store.layout import affine_to_json

__all__ = ["affine_to_json", "affine_to_list"]


def affine_to_list(affine: np.ndarray) -> list[list[float]]:
    """A 4x4 affine as a list of four lists of floats (JSON-ready)."""
    return np.asarray(affine, dtype=np.float64).tolist()
