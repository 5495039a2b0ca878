"""A ``metadata.json`` beside the trained weights that names the classes the network really outputs.

A bundle's ``configs/metadata.json`` describes its default classes (``ct_segmentation_3d``: 3),
but the classes a run trains are read from its data (a store's declared label classes, or
``--class_names``): the demo's store has 4. ``ckpt_export --meta_file configs/metadata.json``
would then embed a description of 3 output channels in a model that has 4, and disagree with
the MONAI Label server, which names the store's classes. :class:`ModelMetadataWriter` writes,
when training starts, ``<ckpt_dir>/metadata.json``: the bundle's metadata with the output's
``num_channels`` and ``channel_def`` (and ``pred_classes``) set from the run's ``class_names``.
Export then takes ``--meta_file <ckpt_dir>/metadata.json``.

Example (``ct_segmentation_3d``'s ``train#handlers``)::

    {"_target_": "radiobundles.training.ModelMetadataWriter", "_disabled_": "$not @is_main_process",
     "meta_file": "$@bundle_root + '/configs/metadata.json'", "class_names": "@class_names",
     "save_dir": "@ckpt_dir"}
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["METADATA_FILE", "ModelMetadataWriter", "metadata_for_classes", "write_model_metadata"]

METADATA_FILE = "metadata.json"


def metadata_for_classes(meta: dict[str, Any], class_names: Sequence[str], output: str = "pred") -> dict[str, Any]:
    """A copy of bundle metadata ``meta`` whose output ``output`` has one channel per class name.

    Example:
        >>> meta = metadata_for_classes(json.load(open("configs/metadata.json")), ["background", "liver"])
        >>> meta["network_data_format"]["outputs"]["pred"]["num_channels"]
        2
    """
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("class_names is empty: a segmentation network outputs at least the background class")
    out = json.loads(json.dumps(meta))
    try:
        pred = out["network_data_format"]["outputs"][output]
    except KeyError:
        raise ValueError(f"bundle metadata has no network_data_format.outputs.{output} to describe") from None
    pred["num_channels"] = len(names)
    pred["channel_def"] = {str(i): n for i, n in enumerate(names)}
    if "pred_classes" in out:
        out["pred_classes"] = f"{len(names)} channels ({', '.join(names)}); the saved prediction is their argmax"
    return out


def write_model_metadata(meta_file: str, class_names: Sequence[str], save_dir: str) -> str:
    """Write ``<save_dir>/metadata.json`` (atomically) for ``class_names``; returns its path."""
    with open(meta_file) as fh:
        meta = metadata_for_classes(json.load(fh), class_names)
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, METADATA_FILE)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w") as fh:
        json.dump(meta, fh, indent=4)
    os.replace(tmp, path)
    return path


class ModelMetadataWriter:
    """Train handler: writes the run's ``metadata.json`` into ``save_dir`` when training starts.

    Args:
        meta_file: the bundle's ``configs/metadata.json``.
        class_names: the classes the network outputs, background first.
        save_dir: where the weights go (the bundle's ``ckpt_dir``).
    """

    def __init__(self, meta_file: str, class_names: Sequence[str], save_dir: str) -> None:
        self.meta_file = os.fspath(meta_file)
        self.class_names = list(class_names)
        self.save_dir = os.fspath(save_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._write)

    def _write(self, engine: Engine) -> None:
        write_model_metadata(self.meta_file, self.class_names, self.save_dir)
