"""The app's own copy of a bundle: configs from the repository, weights in the workspace.

MONAI Label trains a bundle in place (checkpoints go to ``<bundle>/models``, TensorBoard logs
to ``<bundle>/runs``). The app therefore runs a copy kept in its workspace, so fine-tuning on
one store's labels never touches ``bundles/<name>`` in the repository nor another store's
model. At every start the copy's configs are refreshed from the repository bundle; its
``models/`` are kept. A first start seeds ``models/model.pt`` with the repository bundle's
trained checkpoint when there is one, else with the bundle network's initial (random, seeded)
weights, so inference works before any training. A checkpoint named with ``--conf model``
(``make label-server`` names the ``models/model.pt`` beside the store, where ``make demo`` leaves
its model) seeds the copy instead, once per version of that file: fine-tuning in the app is kept
across restarts. Over a store, the copy's ``class_names`` and ``metadata.json`` channels are the
store's label classes, so labels in Slicer carry the store's names. Nothing is downloaded:
bundles are found on disk only.

Example:
    >>> source = find_bundle("ct_segmentation_3d", app_dir="monailabel_app")
    >>> path = prepare_bundle(source, "/app/workspace/bundles")
    >>> os.path.exists(os.path.join(path, "models", "model.pt"))
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from typing import Any

__all__ = [
    "MODEL_FILE",
    "bundle_class_names",
    "find_bundle",
    "prepare_bundle",
    "servable_bundles",
    "set_class_names",
]

MODEL_FILE = "model.pt"
ORIGIN_FILE = "model.origin.json"
logger = logging.getLogger(__name__)
_REQUIRED = ("configs/metadata.json", "configs/inference.json", "configs/train.json")


def _candidates(name: str, app_dir: str, bundles_dir: str | None) -> list[str]:
    from radiobundles.resources import bundles_dir as shipped_bundles

    roots = [bundles_dir] if bundles_dir else []
    # beside the app folder (a checkout), then the shipped bundles (checkout, installed wheel or
    # $RADIOBUNDLES_BUNDLES_DIR): no assumption that the package sits in a source tree
    roots.append(os.path.join(os.path.dirname(os.path.abspath(app_dir)), "bundles"))
    try:
        roots.append(str(shipped_bundles()))
    except FileNotFoundError:
        pass
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


def servable_bundles(app_dir: str, bundles_dir: str | None = None) -> tuple[str, ...]:
    """Every bundle MONAI Label can serve (``supported_apps`` of its metadata names ``monailabel``),
    as ``--conf models all`` serves them: automatic models first (the first one is the one
    ``--conf model`` and epistemic scoring apply to), then the DeepEdit ones, each group by name.

    Example:
        >>> servable_bundles("monailabel_app")
        ('ct_segmentation_3d', 'ct_deepedit_3d')
    """
    found: dict[str, str] = {}
    for candidate in _candidates("", app_dir, bundles_dir):
        if not os.path.isdir(candidate):
            continue
        for name in sorted(os.listdir(candidate)):
            path = os.path.join(candidate, name)
            if name in found or not all(os.path.isfile(os.path.join(path, f)) for f in _REQUIRED):
                continue
            if "monailabel" in (_read_json(os.path.join(path, "configs", "metadata.json")).get("supported_apps") or {}):
                found[name] = path
    if not found:
        raise FileNotFoundError(
            f"--conf models all: no bundle declares supported_apps monailabel under {bundles_dir or 'bundles/'}"
        )
    return tuple(sorted(found, key=lambda n: ("deepedit" in n.lower(), n)))


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


def _write_json(path: str, content: dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w") as fh:
        json.dump(content, fh, indent=4)
    os.replace(tmp, path)


def set_class_names(bundle: str, class_names: Sequence[str]) -> None:
    """Fix the classes of a bundle copy: ``class_names`` in its configs, the output channels in
    ``metadata.json`` (MONAI Label's label names come from its ``channel_def``)."""
    for name in ("train.json", "inference.json"):
        path = os.path.join(bundle, "configs", name)
        config = _read_json(path)
        config["class_names"] = list(class_names)
        _write_json(path, config)
    path = os.path.join(bundle, "configs", "metadata.json")
    meta = _read_json(path)
    pred = meta["network_data_format"]["outputs"]["pred"]
    pred["num_channels"] = len(class_names)
    pred["channel_def"] = {str(i): n for i, n in enumerate(class_names)}
    _write_json(path, meta)


def bundle_class_names(bundle: str) -> list[str]:
    """The class names a bundle uses when its data declares none (``default_class_names`` of its
    ``train.json``, else ``class_names`` when that is a plain list)."""
    config = _read_json(os.path.join(bundle, "configs", "train.json"))
    names = config.get("default_class_names", config.get("class_names"))
    return list(names) if isinstance(names, list) else []


def _read_json(path: str) -> dict[str, Any]:
    with open(path) as fh:
        return json.load(fh)


def _identity(path: str) -> dict[str, Any]:
    stat = os.stat(path)
    return {"source": os.path.realpath(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _misfit(bundle: str, path: str) -> str | None:
    """Why the checkpoint at ``path`` does not load into the copy's network (``None``: it does)."""
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(bundle, "configs", "inference.json"))
    parser["bundle_root"] = bundle
    network = parser.get_parsed_content("network_def", instantiate=True)
    try:
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except (RuntimeError, KeyError) as err:
        classes = parser.get_parsed_content("class_names")
        return f"{len(classes)} classes {classes}: {str(err).strip().splitlines()[0]}"
    return None


def _check_fits(bundle: str, path: str) -> None:
    """A checkpoint given by the user must fit the copy's network (say which, not a size mismatch later)."""
    problem = _misfit(bundle, path)
    if problem:
        raise ValueError(
            f"--conf model {path} does not fit the network of {bundle} ({problem}); "
            f"serve a checkpoint trained on this store's classes with this bundle version ({_version(bundle)}; "
            "see its changelog)"
        )


def prepare_bundle(
    source: str, bundles_root: str, class_names: Sequence[str] | None = None, model: str | None = None
) -> str:
    """Refresh the workspace copy of ``source`` under ``bundles_root``; returns its folder.

    Args:
        source: the bundle folder (configs are copied from it at every start).
        bundles_root: the workspace folder holding the copies.
        class_names: the classes to serve (the store's label classes); ``None``: the bundle's.
        model: a checkpoint to serve; it replaces the copy's model when it is new or has changed
            since it was last copied (a model fine-tuned from it in the app is kept otherwise).
    """
    target = os.path.join(bundles_root, os.path.basename(source.rstrip("/")))
    os.makedirs(os.path.join(target, "models"), exist_ok=True)
    _sync_files(source, target, ["configs", "docs", "LICENSE", "scripts"])  # scripts/: the bundle's own code
    if class_names:
        set_class_names(target, class_names)
    model_path = os.path.join(target, "models", MODEL_FILE)
    origin_path = os.path.join(target, "models", ORIGIN_FILE)
    recorded = _read_json(origin_path) if os.path.isfile(origin_path) else {}
    n_classes = len(class_names) if class_names else None
    origin: dict[str, Any] | None = None
    stamp = _fit_stamp(target, model_path)
    fits = stamp is not None and recorded.get("fits") == stamp
    set_aside = None
    if stamp and not fits:  # a new model file, new configs (classes, network) or a workspace from before stamps
        problem = _misfit(target, model_path)
        fits = problem is None
        if problem:
            checked = recorded.get("fits") or {}
            untouched = all(checked.get(k) == stamp[k] for k in ("size", "mtime_ns"))  # not trained since
            if recorded.get("origin", "").startswith("initial weights") and untouched:
                os.remove(model_path)  # untrained weights made for other classes: nothing to keep
            else:  # trained weights (in the app, --conf model, the bundle's): keep them, out of the way
                set_aside = _set_aside(target, model_path, problem)
            recorded = {}  # as on a first start: seed the copy again, from --conf model or the bundle
    if model:
        if not os.path.isfile(model):
            raise FileNotFoundError(f"--conf model {model}: no such checkpoint")
        wanted = _identity(model)
        if not os.path.exists(model_path) or {k: recorded.get(k) for k in wanted} != wanted:
            _check_fits(target, model)
            _atomic_copy(model, model_path)
            origin = {"origin": "--conf model", **wanted}
    elif not os.path.exists(model_path):
        trained = os.path.join(source, "models", MODEL_FILE)
        if os.path.isfile(trained) and not class_names:
            _atomic_copy(trained, model_path)
            origin = {"origin": "bundle checkpoint", "source": trained}
        else:
            _initial_weights(target, model_path)
            origin = {"origin": "initial weights (untrained, seed 0)", "source": None, "num_classes": n_classes}
    if origin is not None:
        if set_aside:
            origin["previous_model"] = set_aside
        # checked (--conf model) or made for this network; a copied bundle checkpoint is checked next start
        fits = origin["origin"] != "bundle checkpoint"
    if origin is not None or fits:
        # a new model file was written only when there is a new origin
        new_stamp = _fit_stamp(target, model_path) if origin is not None else stamp
        content = {**(origin or recorded), "fits": new_stamp if fits else None}
        if origin is not None:
            content["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if content != recorded:
            _write_json(origin_path, content)
    return target


def _fit_stamp(bundle: str, model_path: str) -> dict[str, Any] | None:
    """What a fit check of ``model_path`` depends on: the file and the copy's ``inference.json``
    (network and classes); ``None`` when there is no model yet."""
    if not os.path.isfile(model_path):
        return None
    stat = os.stat(model_path)
    with open(os.path.join(bundle, "configs", "inference.json"), "rb") as fh:
        config = hashlib.sha1(fh.read()).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inference_json_sha1": config}


def _version(bundle: str) -> str | None:
    return _read_json(os.path.join(bundle, "configs", "metadata.json")).get("version")


def _set_aside(bundle: str, model_path: str, problem: str) -> dict[str, str]:
    """Move a workspace model that no longer loads into the copy's network out of the way.

    A bundle upgrade can change the network (ct_segmentation_3d and ct_deepedit_3d 0.2.0 moved to
    batch norm), and a model fine-tuned in the app under the old version would then fail every
    ``/infer``. It is kept, renamed ``model.set-aside-<time>.pt`` beside the new one, and the copy
    is seeded again; the server log and ``model.origin.json`` (``previous_model``) say where it
    went and why.
    """
    aside = os.path.join(os.path.dirname(model_path), f"model.set-aside-{time.strftime('%Y%m%dT%H%M%S')}.pt")
    os.replace(model_path, aside)
    why = f"it does not load into the network of {os.path.basename(bundle)} {_version(bundle)} ({problem})"
    logger.warning("workspace model set aside as %s: %s; serving a new seed model (retrain with Train)", aside, why)
    return {"path": aside, "why": why}
