"""The app's own copy of a bundle: configs from the repository, weights in the workspace.

MONAI Label trains a bundle in place (checkpoints go to ``<bundle>/models``, TensorBoard logs
to ``<bundle>/runs``). The app therefore runs a copy kept in its workspace, so fine-tuning on
one store's labels never touches ``bundles/<name>`` in the repository nor another store's
model. At every start the copy's configs are refreshed from the repository bundle; its
``models/`` are kept. A first start seeds ``models/model.pt`` with the repository bundle's
trained checkpoint when there is one, else with the bundle network's initial (random, seeded)
weights, so inference works before any training. Nothing is downloaded: bundles are found
on disk only.

Example:
    >>> source = find_bundle("ct_segmentation_3d", app_dir="monailabel_app")
    >>> path = prepare_bundle(source, "/app/workspace/bundles")
    >>> os.path.exists(os.path.join(path, "models", "model.pt"))
    True
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence

__all__ = ["MODEL_FILE", "find_bundle", "prepare_bundle"]

MODEL_FILE = "model.pt"
ORIGIN_FILE = "model.origin.json"
_REQUIRED = ("configs/metadata.json", "configs/inference.json", "configs/train.json")


def _candidates(name: str, app_dir: str, bundles_dir: str | None) -> list[str]:
    import radiobundles

    repo = os.path.dirname(os.path.dirname(os.path.abspath(radiobundles.__file__)))
    roots = [bundles_dir] if bundles_dir else []
    roots += [os.path.join(os.path.dirname(os.path.abspath(app_dir)), "bundles"), os.path.join(repo, "bundles")]
    seen, out = set(), []
    for root in roots:
        path = os.path.abspath(os.path.join(root, name))
        if path not in seen:
            seen.add(path)
            out.append(path)
    return out


def find_bundle(name: str, app_dir: str, bundles_dir: str | None = None) -> str:
    """The folder of bundle ``name``: under ``bundles_dir`` if given, else the repository's ``bundles/``.

    Raises:
        FileNotFoundError: no such bundle (the message lists where it looked).
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid bundle name {name!r}; give a folder name under bundles/, e.g. ct_segmentation_3d")
    looked = _candidates(name, app_dir, bundles_dir)
    for path in looked:
        if all(os.path.isfile(os.path.join(path, f)) for f in _REQUIRED):
            return path
    raise FileNotFoundError(
        f"bundle {name!r} not found (looked in {looked} for {', '.join(_REQUIRED)}); "
        "pass --conf models <bundle name> and, for bundles elsewhere, --conf bundles_dir <folder>"
    )


def _atomic_copy(src: str, dst: str) -> None:
    tmp = f"{dst}.tmp-{uuid.uuid4().hex}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _sync_files(source: str, target: str, names: Sequence[str]) -> None:
    for name in names:
        src = os.path.join(source, name)
        if os.path.isdir(src):
            os.makedirs(os.path.join(target, name), exist_ok=True)
            for entry in sorted(os.listdir(src)):
                if os.path.isfile(os.path.join(src, entry)):
                    _atomic_copy(os.path.join(src, entry), os.path.join(target, name, entry))
        elif os.path.isfile(src):
            _atomic_copy(src, os.path.join(target, name))


def _initial_weights(bundle: str, path: str) -> None:
    """Save the bundle network's initial weights (seeded) as a checkpoint MONAI Label loads."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(bundle, "configs", "inference.json"))
    parser["bundle_root"] = bundle
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def", instantiate=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    torch.save(network.state_dict(), tmp)
    os.replace(tmp, path)


def prepare_bundle(source: str, bundles_root: str) -> str:
    """Refresh the workspace copy of ``source`` under ``bundles_root``; returns its folder."""
    target = os.path.join(bundles_root, os.path.basename(source.rstrip("/")))
    os.makedirs(os.path.join(target, "models"), exist_ok=True)
    _sync_files(source, target, ["configs", "docs", "LICENSE"])
    model = os.path.join(target, "models", MODEL_FILE)
    if not os.path.exists(model):
        trained = os.path.join(source, "models", MODEL_FILE)
        if os.path.isfile(trained):
            _atomic_copy(trained, model)
            origin = {"origin": "bundle checkpoint", "source": trained}
        else:
            _initial_weights(target, model)
            origin = {"origin": "initial weights (untrained, seed 0)", "source": None}
        with open(os.path.join(target, "models", ORIGIN_FILE), "w") as fh:
            json.dump({**origin, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, fh, indent=1)
    return target
