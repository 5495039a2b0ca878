"""A faster channel argmax for segmentation outputs: the same labels as ``AsDiscreted(argmax=True)``.

On CPU, ``torch.argmax`` over the channel axis of a ``(C, H, W, D)`` volume is slow (it reduces
over the outermost, strided axis): 1.9 s of the 3.5 CPU s a 256x256x160 ``/infer`` spent outside
the network in the measurements of ``docs/README.md``. ``Tensor.max(dim).indices`` returns the
same indices (the first maximal one on ties, as ``argmax``) several times faster. It is a subclass
of ``AsDiscreted`` on purpose: MONAI Label's scoring drops ``AsDiscreted`` from a bundle's
postprocessing by type (to keep probabilities), and must drop this one too.

Example (``inference.json``'s ``postprocessing``)::

    {"_target_": "radiobundles.ct3d.ArgmaxLabeld", "keys": "pred"}
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import AsDiscreted

__all__ = ["ArgmaxLabeld", "channel_argmax"]


def channel_argmax(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The index of the largest channel per voxel, shape ``(1, *spatial)``, as ``dtype``.

    Equal to ``torch.argmax(x, 0, keepdim=True).to(dtype)``; a ``MetaTensor`` keeps its metadata.

    Example:
        >>> channel_argmax(torch.tensor([[[0.1, 0.7]], [[0.9, 0.2]]])).tolist()
        [[[1.0, 0.0]]]
    """
    if x.ndim < 2:
        raise ValueError(f"expected a channel-first tensor (C, *spatial), got shape {tuple(x.shape)}")
    raw = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    if raw.shape[0] == 1:
        labels = torch.zeros_like(raw, dtype=dtype)
    else:
        labels = raw.max(dim=0, keepdim=True).indices.to(dtype)
    if isinstance(x, MetaTensor):
        return MetaTensor(labels, meta=x.meta, applied_operations=x.applied_operations)
    return labels


class ArgmaxLabeld(AsDiscreted):
    """``AsDiscreted(keys, argmax=True)``, computed with :func:`channel_argmax`.

    Args:
        keys: the keys of channel-first predictions (logits or probabilities).
        dtype: the label map's dtype (``AsDiscreted``'s default, ``float32``).
        allow_missing_keys: do not fail on a missing key.
    """

    def __init__(
        self, keys: KeysCollection, dtype: torch.dtype = torch.float32, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, argmax=True, dtype=dtype, allow_missing_keys=allow_missing_keys)
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = channel_argmax(d[key], self.dtype)
        return d
