"""The Model Zoo's coarser working spacing, as a variant of ``ct_segmentation_3d`` to measure.

The Model Zoo's ``spleen_ct_segmentation`` resamples every volume to a fixed spacing
(``Spacingd`` to 1.5 mm) before the network and resamples the prediction back (``Invertd``) after
it. This writes a copy of our bundle that does the same, so that its latency
(:mod:`benchmarks.annotator_latency`) and its validation Dice with the demo's recipe
(:mod:`benchmarks.annotator_dice`) can be measured beside today's bundle:

* ``train.json``: training patches are cut from whole volumes resampled to ``working_spacing``
  (image bilinear, label nearest; ``CacheDataset`` keeps the resampled volumes), then scaled and
  augmented as today. Validation resamples the image only and inverts the prediction
  (``Invertd``, probabilities, bilinear) to the source grid, so the Dice that picks the best
  checkpoint is computed against the untouched source label.
* ``evaluate.json``: the same inversion before the argmax, Dice on the source grid.
* ``inference.json``: ``Spacingd`` after loading, ``Invertd`` after the softmax, so the saved
  label map (and ``/infer``'s NRRD) is on the input's grid with its affine.

Run::

    python -m benchmarks.annotator_spacing --pixdim 1.5 --dest /tmp/sp15
    python -m benchmarks.annotator_dice --variants after=bundles sp15=/tmp/sp15/bundles --out /tmp/dice
    python -m benchmarks.annotator_latency --variants after sp15=/tmp/sp15/bundles --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Hashable, Mapping
from typing import Any

from monai.transforms import Spacingd

__all__ = ["ServerSpacingd", "write_spacing_variant"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = "ct_segmentation_3d"


def _load(cfg: str, name: str) -> dict[str, Any]:
    with open(os.path.join(cfg, name)) as fh:
        return json.load(fh)


def _dump(cfg: str, name: str, data: dict[str, Any]) -> None:
    with open(os.path.join(cfg, name), "w") as fh:
        json.dump(data, fh, indent=4)
        fh.write("\n")


class ServerSpacingd(Spacingd):
    """``Spacingd`` that also runs inside MONAI Label's infer task.

    MONAI 1.6.1's ``Spacingd`` updates every ``<key>_*`` item of a NIfTI's data as a metadata
    dict; MONAI Label 0.8.5 adds ``image_path`` (a string) to the data, so ``/infer`` failed with
    ``AttributeError: 'str' object has no attribute 'update'``. Non-dict ``<key>_*`` items are set
    aside during the call and put back after it.
    """

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        d = dict(data)
        hidden = {
            k: d.pop(k)
            for k in list(d)
            if isinstance(k, str) and any(k.startswith(f"{key}_") for key in self.keys) and not isinstance(d[k], dict)
        }
        out = super().__call__(d, lazy=lazy)
        out.update(hidden)
        return out


def _spacing(keys: list[str], modes: list[str]) -> dict[str, Any]:
    target = "benchmarks.annotator_spacing.ServerSpacingd"
    return {"_target_": target, "keys": keys, "pixdim": "@working_spacing", "mode": modes}


def _invert(transform: str) -> dict[str, Any]:
    return {
        "_target_": "Invertd",
        "keys": "pred",
        "transform": transform,
        "orig_keys": "image",
        "nearest_interp": False,
        "to_tensor": True,
    }


def write_spacing_variant(pixdim: float, dest: str, source: str | None = None) -> str:
    """A copy of the bundle working at ``pixdim`` mm under ``dest``; returns its bundles folder."""
    source = source or os.path.join(REPO, "bundles", BUNDLE)
    bundles = os.path.join(dest, "bundles")
    out = os.path.join(bundles, BUNDLE)
    if os.path.isdir(out):
        shutil.rmtree(out)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("*.pt", "eval", "runs"))
    cfg = os.path.join(out, "configs")
    spacing = [pixdim] * 3

    train = _load(cfg, "train.json")
    train["working_spacing"] = spacing
    train["train"]["dataset"] = {
        "_target_": "CacheDataset",
        "data": "@train#datalist",
        "transform": {
            "_target_": "Compose",
            "transforms": [
                "@load_volumes",
                _spacing(["image", "label"], ["bilinear", "nearest"]),
                {
                    "_target_": "RandCropByPosNegLabeld",
                    "keys": ["image", "label"],
                    "label_key": "label",
                    "spatial_size": "@patch_size",
                    "pos": "@pos",
                    "neg": "@neg",
                    "num_samples": "@patches_per_volume",
                    "allow_smaller": True,
                },
                {
                    "_target_": "SpatialPadd",
                    "keys": "image",
                    "spatial_size": "@patch_size",
                    "value": "$@hu_window[0]",
                },
                {"_target_": "SpatialPadd", "keys": "label", "spatial_size": "@patch_size", "value": 0},
                "@train#preprocessing",
            ],
        },
        "cache_rate": "@cache_rate",
        "num_workers": "@num_workers",
    }
    val_pre = train["validate"]["preprocessing"]["transforms"]
    val_pre.insert(1, _spacing(["image"], ["bilinear"]))
    train["validate"]["postprocessing"]["transforms"].insert(1, _invert("@validate#preprocessing"))
    for handler in train["validate"]["handlers"]:
        if handler["_target_"].endswith("TensorBoardSlicePanel"):
            handler["_disabled_"] = True  # image (working grid) and label (source grid) differ in shape
    _dump(cfg, "train.json", train)

    evaluate = _load(cfg, "evaluate.json")
    evaluate["validate#postprocessing"]["transforms"].insert(1, _invert("@validate#preprocessing"))
    _dump(cfg, "evaluate.json", evaluate)

    infer = _load(cfg, "inference.json")
    infer["working_spacing"] = spacing
    infer["preprocessing"]["transforms"].insert(1, _spacing(["image"], ["bilinear"]))
    infer["postprocessing"]["transforms"].insert(1, _invert("@preprocessing"))
    _dump(cfg, "inference.json", infer)
    return bundles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pixdim", type=float, default=1.5, help="working spacing in mm (isotropic)")
    parser.add_argument("--dest", required=True)
    args = parser.parse_args()
    print(write_spacing_variant(args.pixdim, args.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
