"""Simulated annotator clicks, and Dice per label after 0, 1, 5, 10 of them (``evaluate.json``).

An annotator looks at the segmentation, finds the largest wrong region and clicks in its
middle, as the class that region should have (a structure it missed: a click on that
structure; a false positive: a ``background`` click). :func:`next_click` does the same on the
ground truth: the largest connected error region, its voxel farthest from the region's border.
:class:`ClickEvaluation` runs the network with 0, 1, 2, ... such clicks per volume (all on the
network's grid, i.e. after resizing) and writes Dice per label and click count to
``dice_vs_clicks.csv``, the means to ``dice_vs_clicks_summary.csv`` and the curve to
``dice_vs_clicks.png``. Training clicks the same way: :class:`NoClicksd` starts an item with no
clicks, :class:`AddAnnotatorClickd` adds one per round of MONAI's ``Interaction``.

Example:
    >>> evaluation = ClickEvaluation(network, dataset, {"background": 0, "structure_1": 1}, "eval")
    >>> summary = evaluation.run()  # {(label, clicks): mean Dice}
    >>> summary[("structure_1", 5)] > summary[("structure_1", 0)]
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.deepedit.transforms import AddGuidanceSignalDeepEditd
from monai.transforms import Randomizable, Transform
from scipy import ndimage
from tqdm import tqdm

__all__ = [
    "AddAnnotatorClickd",
    "ClickEvaluation",
    "NoClicksd",
    "dice_per_label",
    "next_click",
    "predict_with_clicks",
]

CSV_NAME = "dice_vs_clicks.csv"
SUMMARY_NAME = "dice_vs_clicks_summary.csv"
PNG_NAME = "dice_vs_clicks.png"


def next_click(
    label: np.ndarray, pred: np.ndarray, label_names: Mapping[str, int], rng: np.random.RandomState | None = None
) -> tuple[str, list[int]] | None:
    """The click an annotator makes next: ``(label name, [i, j, k])``, or ``None`` when nothing is wrong.

    Args:
        label: ground-truth class map ``(X, Y, Z)``.
        pred: predicted class map of the same shape.
        label_names: ``{name: class value}`` (``background`` is 0).
        rng: draw the point inside the region instead (weight ``exp(depth) - 1``, as MONAI's
            ``AddRandomGuidanceDeepEditd`` does: mostly deep inside, sometimes nearer its border);
            training uses this so that the network does not learn one exact click position.
    """
    errors = np.asarray(label) != np.asarray(pred)
    if not errors.any():
        return None
    regions, n = ndimage.label(errors)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    largest = np.pad(regions == int(np.argmax(sizes)) + 1, 1)
    # farthest from the region's border (padding: the volume's edge counts as a border too)
    depth = ndimage.distance_transform_edt(largest)[1:-1, 1:-1, 1:-1]
    if rng is None:
        flat = int(np.argmax(depth))
    else:
        weight = np.expm1(depth.ravel())
        flat = int(rng.choice(weight.size, p=weight / weight.sum()))
    point = np.unravel_index(flat, depth.shape)
    value = int(np.asarray(label)[point])
    names = {v: k for k, v in label_names.items()}
    return names.get(value, "background"), [int(c) for c in point]


class NoClicksd(Transform):
    """Start a training item with no clicks: ``d[guidance] = {name: "[]"}`` in ``d["label_names"]`` order.

    MONAI's ``AddInitialSeedPointMissingLabelsd`` instead starts every interactive item with one
    click on *every* label, background included; an annotator never works like that (the first
    click comes after the automatic pass, on what it got wrong), and a network that has only seen
    complete sets of clicks learns that a label without a click is unreliable: a click on one
    structure then lowered the other's Dice. Points are JSON text, as MONAI's seed transform
    stores them, so that they survive the batch collation of MONAI's ``Interaction``.
    """

    def __init__(self, guidance: str = "guidance") -> None:
        self.guidance = guidance

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        d[self.guidance] = {name: "[]" for name in d["label_names"]}
        return d


class AddAnnotatorClickd(Randomizable, Transform):
    """Add the simulated annotator's next click (:func:`next_click`) to ``d[guidance]`` (training).

    The replacement of MONAI's ``FindDiscrepancyRegionsDeepEditd`` + ``AddRandomGuidanceDeepEditd``
    in ``click_transforms`` of MONAI's ``Interaction``: one click per interaction, on the largest
    wrong region of the current prediction, as the class that region should have, the way
    :class:`ClickEvaluation` (and an annotator) clicks. MONAI's transforms click every wrong label
    at once and then keep a random subset of labels' clicks, so the network never learned what
    one click on one label should (and should not) change. ``d[probability]`` (set by
    ``Interaction``: ``1 - j / max_interactions`` in training) is the chance that this
    interaction clicks at all, so the number of clicks seen in training varies.

    Expects ``d["label"]`` (``(1, X, Y, Z)`` class values), ``d[pred]`` (``(1, X, Y, Z)`` after
    ``AsDiscreted(argmax=True)``), ``d["label_names"]`` and ``d[guidance]`` (from :class:`NoClicksd`).
    """

    def __init__(self, guidance: str = "guidance", pred: str = "pred", probability: str = "probability") -> None:
        self.guidance, self.pred, self.probability = guidance, pred, probability

    def __call__(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        d = dict(data)
        if self.R.random_sample() >= float(d.get(self.probability, 1.0)):
            return d
        names = {k: int(v) for k, v in d["label_names"].items()}
        truth = np.asarray(d["label"])[0].astype(np.int64)
        pred = np.asarray(d[self.pred])[0].astype(np.int64)
        click = next_click(truth, pred, names, rng=self.R)
        if click is not None:
            guidance = dict(d[self.guidance])
            points = guidance.get(click[0], "[]")
            points = json.loads(points) if isinstance(points, str) else [list(p) for p in points]
            guidance[click[0]] = json.dumps([*points, click[1]])
            d[self.guidance] = guidance
        return d


def dice_per_label(label: np.ndarray, pred: np.ndarray, label_names: Mapping[str, int]) -> dict[str, float]:
    """Dice of each structure (not ``background``); NaN where a structure is in neither map."""
    out = {}
    for name, value in label_names.items():
        if name == "background":
            continue
        a, b = np.asarray(label) == value, np.asarray(pred) == value
        total = int(a.sum() + b.sum())
        out[name] = 2.0 * float((a & b).sum()) / total if total else float("nan")
    return out


def predict_with_clicks(
    network: torch.nn.Module,
    image: Any,
    clicks: Mapping[str, Sequence[Sequence[int]]],
    label_names: Mapping[str, int],
    device: str | torch.device = "cpu",
    number_intensity_ch: int = 1,
    sigma: int = 3,
) -> np.ndarray:
    """The class map the network predicts for ``image`` (``(C, X, Y, Z)`` on the network grid) given ``clicks``."""
    signal = AddGuidanceSignalDeepEditd(keys="image", guidance="guidance", number_intensity_ch=number_intensity_ch,
                                        sigma=sigma)  # fmt: skip
    intensity = np.asarray(image[:number_intensity_ch], dtype=np.float32)
    guidance = {name: [list(p) for p in clicks.get(name, [])] for name in label_names}
    x = signal({"image": intensity, "guidance": guidance})["image"]
    with torch.no_grad():
        logits = network(torch.as_tensor(np.asarray(x), dtype=torch.float32)[None].to(device))
    return logits.argmax(1)[0].cpu().numpy()


class ClickEvaluation:
    """Dice per label after ``click_counts`` simulated clicks, over a dataset, to CSV and PNG.

    Args:
        network: the DeepEdit network (input: intensity channels + one guidance channel per label).
        dataset: items with ``image`` (``(C, X, Y, Z)``, intensity first) and ``label``
            (``(1, X, Y, Z)``) on the network grid, and ``subject_id``.
        label_names: ``{name: class value}``, ``background`` first (the guidance channel order).
        output_dir: where the CSV files and the PNG go (created).
        click_counts: click counts to report (clicks are added one at a time up to the largest).
        device: where the network runs.
        checkpoint: a state dict (or a checkpoint with ``model``) loaded into ``network`` first.
        number_intensity_ch / sigma: as in ``AddGuidanceSignalDeepEditd`` during training.
        progress: show a tqdm bar over the volumes.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        dataset: Sequence[Mapping[str, Any]],
        label_names: Mapping[str, int],
        output_dir: str,
        click_counts: Sequence[int] = (0, 1, 5, 10),
        device: str | torch.device = "cpu",
        checkpoint: str | None = None,
        number_intensity_ch: int = 1,
        sigma: int = 3,
        progress: bool = True,
    ) -> None:
        if not click_counts or min(click_counts) < 0:
            raise ValueError(f"click_counts must be non-negative numbers of clicks, got {list(click_counts)}")
        self.network = network
        self.dataset = dataset
        self.label_names = dict(label_names)
        self.output_dir = str(output_dir)
        self.click_counts = sorted({int(c) for c in click_counts})
        self.device = device
        self.checkpoint = checkpoint
        self.number_intensity_ch = number_intensity_ch
        self.sigma = sigma
        self.progress = progress

    def _load(self) -> None:
        if not self.checkpoint:
            return
        if not os.path.isfile(self.checkpoint):
            raise FileNotFoundError(f"checkpoint {self.checkpoint} not found; train the bundle first (train.json)")
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        self.network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)

    def evaluate_volume(self, image: Any, label: Any) -> dict[int, dict[str, float]]:
        """``{clicks: {label: Dice}}`` for one volume."""
        truth = np.asarray(label)[0].astype(np.int64)
        clicks: dict[str, list[list[int]]] = {name: [] for name in self.label_names}
        out: dict[int, dict[str, float]] = {}
        pred = None
        for n in range(max(self.click_counts) + 1):
            if n > 0:
                click = next_click(truth, pred, self.label_names)
                if click is not None:  # a perfect segmentation gets no more clicks
                    clicks[click[0]].append(click[1])
            if n == 0 or click is not None:
                pred = predict_with_clicks(self.network, image, clicks, self.label_names, self.device,
                                           self.number_intensity_ch, self.sigma)  # fmt: skip
            if n in self.click_counts:
                out[n] = dice_per_label(truth, pred, self.label_names)
        return out

    def run(self) -> dict[tuple[str, int], float]:
        """Evaluate every volume; write the files; return ``{(label, clicks): mean Dice}``."""
        self._load()
        self.network.to(self.device).eval()
        rows = []
        for item in tqdm(self.dataset, desc="clicks", disable=not self.progress):
            per_count = self.evaluate_volume(item["image"], item["label"])
            for n, dice in per_count.items():
                rows += [{"subject_id": item.get("subject_id", ""), "clicks": n, "label": k, "dice": v}
                         for k, v in dice.items()]  # fmt: skip
        summary = {}
        for name in self.label_names:
            for n in self.click_counts:
                values = [r["dice"] for r in rows if r["label"] == name and r["clicks"] == n]
                if values:
                    summary[(name, n)] = float(np.nanmean(values)) if not np.all(np.isnan(values)) else float("nan")
        self._write(rows, summary)
        return summary

    def _write(self, rows: list[dict[str, Any]], summary: dict[tuple[str, int], float]) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        _write_csv(os.path.join(self.output_dir, CSV_NAME), ["subject_id", "clicks", "label", "dice"], rows)
        summary_rows = [{"label": k, "clicks": n, "mean_dice": v} for (k, n), v in summary.items()]
        _write_csv(os.path.join(self.output_dir, SUMMARY_NAME), ["label", "clicks", "mean_dice"], summary_rows)
        plot_dice_vs_clicks(summary, os.path.join(self.output_dir, PNG_NAME))


def _write_csv(path: str, fields: list[str], rows: list[dict[str, Any]]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def plot_dice_vs_clicks(summary: Mapping[tuple[str, int], float], path: str) -> None:
    """One line per label: mean Dice against the number of clicks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name in sorted({k for k, _ in summary}):
        points = sorted((n, v) for (k, n), v in summary.items() if k == name)
        ax.plot([n for n, _ in points], [v for _, v in points], marker="o", label=name)
    ax.set_xlabel("simulated clicks")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Dice vs clicks")
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
