"""Grad-CAM overlays (``monai.visualize.GradCAM``) for the first subjects an evaluator sees.

Each PNG shows the first input channel in three orthogonal planes through the hottest
point of the class-activation map, the map overlaid, and the true class, the predicted
class and its probability in the title.

Example (in a bundle config, among ``validate#handlers``):
    ``{"_target_": "scripts.gradcam.GradCamOverlays", "network": "@network",
    "target_layers": "class_layers.relu", "output_dir": "$@output_dir + '/gradcam'",
    "class_map": "@data.class_map", "num_subjects": 4}``
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.visualize import GradCAM

from scripts.data import ClassMap
from scripts.metrics import class_index

__all__ = ["GradCamOverlays", "save_overlay"]


def save_overlay(image: np.ndarray, cam: np.ndarray, path: str, title: str) -> str:
    """Three planes of ``image`` (3D) with ``cam`` (3D, 0..1) overlaid, through the CAM's maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # a map coarser than one voxel of the last feature grid is flat: show the volume's centre then
    flat = float(np.ptp(cam)) < 1e-6
    centre = tuple(n // 2 for n in cam.shape) if flat else np.unravel_index(int(np.argmax(cam)), cam.shape)
    if flat:
        title += " (flat map: choose an earlier gradcam_layer for this input size)"
    planes = [
        ("sagittal", image[centre[0]], cam[centre[0]]),
        ("coronal", image[:, centre[1]], cam[:, centre[1]]),
        ("axial", image[:, :, centre[2]], cam[:, :, centre[2]]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    lo, hi = np.percentile(image, [1, 99])
    for ax, (name, img, heat) in zip(axes, planes):
        ax.imshow(np.rot90(img), cmap="gray", vmin=lo, vmax=hi)
        # only the warmer part of the map, so the anatomy under it stays visible
        ax.imshow(np.ma.masked_less(np.rot90(heat), 0.2), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


class GradCamOverlays:
    """Saves ``num_subjects`` Grad-CAM overlay PNGs into ``output_dir`` during an evaluator's run.

    Args:
        network: the classifier (a DDP wrapper is unwrapped).
        target_layers: layer name for ``GradCAM`` (``"class_layers.relu"`` for MONAI's
            DenseNet121, ``"layer4"`` for its ResNets).
        output_dir: folder for ``gradcam_<subject>.png``.
        class_map: the model's classes (titles).
        num_subjects: how many subjects get a PNG (the first ones in loader order).
    """

    def __init__(
        self, network: torch.nn.Module, target_layers: str, output_dir: str, class_map: ClassMap, num_subjects: int = 4
    ) -> None:
        self.network = network.module if hasattr(network, "module") else network
        self.target_layers = target_layers
        self.output_dir = output_dir
        self.class_map = class_map
        self.num_subjects = int(num_subjects)
        self.saved: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.saved.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        for out, item in zip(outputs, batch):
            if len(self.saved) >= self.num_subjects:
                return
            self.saved.append(self.overlay(out, item))

    def overlay(self, out: dict[str, Any], item: dict[str, Any]) -> str:
        image = torch.as_tensor(out["image"]).detach().float()[None]
        probs = torch.as_tensor(out["pred"]).detach().float().reshape(-1).cpu()
        predicted = int(probs.argmax())
        was_training = self.network.training
        self.network.eval()
        try:
            with torch.enable_grad():  # evaluators run under no_grad; Grad-CAM needs gradients
                cam = GradCAM(nn_module=self.network, target_layers=self.target_layers)(image, class_idx=predicted)
        finally:
            self.network.train(was_training)
        names = self.class_map.class_names
        subject = str(item.get("subject_id", len(self.saved)))
        label = out.get("label", item.get("label"))
        true = f"true {names[class_index(label)]}, " if label is not None else ""
        title = f"{subject}: {true}predicted {names[predicted]} ({float(probs[predicted]):.2f})"
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, f"gradcam_{subject}.png")
        return save_overlay(image[0, 0].cpu().numpy(), cam[0, 0].detach().cpu().numpy(), path, title)
