"""Slice-wise inference over 3D volumes, reassembled into a 3D prediction on the source grid.

MONAI's ``SliceInferer`` runs the 2D network over every axial slice (with sliding windows of
``roi_size`` inside a slice) and stacks the results back along depth; a ``MetaTensor`` input
keeps its affine, so the prediction saves onto the source grid.

Example:
    >>> image = LoadImage(ensure_channel_first=True)("imagesTr/case_000_0000.nii.gz")
    >>> seg = predict_volume(network, image, roi_size=(128, 128))     # [1, H, W, D], image.affine
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer

__all__ = ["predict_volume", "slice_inferer"]


def slice_inferer(roi_size: Sequence[int], sw_batch_size: int = 16, overlap: float = 0.25) -> SliceInferer:
    """A ``SliceInferer`` over axial slices (the last spatial axis)."""
    return SliceInferer(roi_size=tuple(roi_size), sw_batch_size=sw_batch_size, spatial_dim=2, overlap=overlap)


def predict_volume(
    network: torch.nn.Module,
    image: torch.Tensor,
    roi_size: Sequence[int],
    sw_batch_size: int = 16,
    overlap: float = 0.25,
    argmax: bool = True,
) -> torch.Tensor:
    """Predict a ``[C, H, W, D]`` volume slice by slice with a 2D network.

    Args:
        network: 2D segmentation network (put in eval mode here).
        image: channel-first volume; a ``MetaTensor`` passes its affine to the result.
        roi_size: in-plane window (the network's training slice size).
        sw_batch_size: slices per forward pass.
        overlap: in-plane sliding-window overlap (used only when a slice exceeds ``roi_size``).
        argmax: return the label map ``[1, H, W, D]`` instead of the logits ``[n_classes, H, W, D]``.
    """
    if image.ndim != 4:
        raise ValueError(f"expected a channel-first volume [C, H, W, D], got shape {tuple(image.shape)}")
    device = next(network.parameters()).device
    network.eval()
    with torch.no_grad():
        logits = slice_inferer(roi_size, sw_batch_size, overlap)(image[None].to(device).float(), network)[0]
    out = logits.argmax(dim=0, keepdim=True) if argmax else logits
    if isinstance(image, MetaTensor) and not isinstance(out, MetaTensor):
        out = MetaTensor(out, meta=image.meta)
    return out
