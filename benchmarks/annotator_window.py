"""Inference window and overlap of a trained checkpoint: Dice and time on CTs larger than a window.

The demo's volumes (at most 96x96x64) fit inside one inference window, so the demo's validation
Dice cannot see what tiling a large CT into windows does (seams where windows meet, Gaussian
blending). This benchmark trains nothing: it takes a bundle and a checkpoint trained with the
demo's recipe (:mod:`benchmarks.annotator_dice` writes one per variant), makes CT-like volumes of
``--shape`` (256x256x160 by default, the latency benchmark's large CT) whose structures are sized
like the demo's (radius 3 to 10 voxels, many of them, so that windows cut through several), and
segments them with each ``window:overlap`` setting, in this process, with MONAI's
``SlidingWindowInferer``. It prints, per setting, the mean Dice over the structures against the
synthetic truth, the agreement with the first setting (Dice between the two label maps) and the
network's wall and CPU seconds.

Run (after ``python -m benchmarks.annotator_dice --variants after=bundles --out /tmp/dice``)::

    python -m benchmarks.annotator_window --bundle bundles/ct_segmentation_3d \
        --ckpt /tmp/dice/after/ckpt/model.pt --settings 48:0.25 128x128x160:0 128x128x160:0.25
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from monai.transforms import ScaleIntensityRange

from radiobject_adapter.synthetic import ct_like_volume

__all__ = ["large_ct", "parse_setting", "segment"]


def large_ct(shape: tuple[int, int, int], n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like image (HU) and label of ``shape`` with the demo's structure sizes (radius 3 to 10
    voxels) at the demo's density (6 spheres per 64^3), so that windows cut through many."""
    n_objects = max(6, int(np.prod(shape) / 64**3 * 6))
    image, label = ct_like_volume(shape, n_classes=n_classes, n_objects=n_objects, seed=seed, radius=(3, 10))
    return image.astype(np.float32), label


def parse_setting(text: str) -> tuple[list[int], float]:
    """``'128x128x160:0'`` -> ([128, 128, 160], 0.0); ``'48:0.25'`` -> ([48, 48, 48], 0.25)."""
    window, _, overlap = text.partition(":")
    size = [int(v) for v in window.split("x")]
    return (size * 3 if len(size) == 1 else size), float(overlap or 0.25)


def _dice(a: np.ndarray, b: np.ndarray, n_classes: int) -> float:
    scores = []
    for k in range(1, n_classes + 1):
        total = (a == k).sum() + (b == k).sum()
        if total:
            scores.append(2.0 * ((a == k) & (b == k)).sum() / total)
    return float(np.mean(scores)) if scores else 1.0


def segment(
    network: torch.nn.Module, image: np.ndarray, hu_window: list[float], roi: list[int], overlap: float, batch: int
) -> tuple[np.ndarray, float, float]:
    """Labels of ``image`` (HU) by the bundle's intensity window and a sliding window; wall and CPU s."""
    scale = ScaleIntensityRange(hu_window[0], hu_window[1], 0.0, 1.0, clip=True)  # the bundle's preprocessing
    x = torch.as_tensor(scale(image[None]))[None]
    inferer = SlidingWindowInferer(roi, batch, overlap, mode="gaussian")
    w0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        logits = inferer(x, network)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return logits[0].max(0).indices.numpy().astype(np.uint8), wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, help="the bundle folder the checkpoint was trained with")
    parser.add_argument("--ckpt", required=True, help="model.pt (a state dict, or a dict with 'model')")
    parser.add_argument("--settings", nargs="+", default=["48:0.25", "128x128x160:0", "128x128x160:0.25"])
    parser.add_argument("--shape", default="256x256x160")
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--classes", type=int, default=3, help="structures (the demo has 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = ConfigParser()
    config.read_config(os.path.join(args.bundle, "configs", "inference.json"))
    config["bundle_root"] = args.bundle
    config["num_classes"] = args.classes + 1
    network = config.get_parsed_content("network_def").eval()
    state = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    network.load_state_dict(state["model"] if "model" in state else state)
    hu_window = config.get_parsed_content("hu_window")
    batch = config.get_parsed_content("sw_batch_size")
    shape = tuple(int(v) for v in args.shape.split("x"))

    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for v in range(args.volumes):
        image, label = large_ct(shape, args.classes, seed=100 + v)
        first = None
        for text in args.settings:
            roi, overlap = parse_setting(text)
            pred, wall, cpu = segment(network, image, hu_window, roi, overlap, batch)
            first = pred if first is None else first
            dice, agree = _dice(pred, label, args.classes), _dice(pred, first, args.classes)
            rows.setdefault(text, []).append((dice, agree, wall, cpu))
            print(f"  volume {v}: {text}: Dice {dice:.4f}, agreement {agree:.4f}, {wall:.2f} s / {cpu:.2f} CPU s")
    load = os.getloadavg()
    print(f"\n{args.volumes} volumes of {args.shape}, torch threads {torch.get_num_threads()}, load {load[0]:.1f}")
    head = f"{'window:overlap':22s}{'Dice vs truth':>15s}{'agreement':>12s}{'wall s':>9s}{'CPU s':>9s}"
    print(head + "\n" + "-" * len(head))
    for text, values in rows.items():
        cols = [statistics.mean(v[i] for v in values) for i in range(4)]
        print(f"{text:22s}{cols[0]:>15.4f}{cols[1]:>12.4f}{cols[2]:>9.2f}{cols[3]:>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
