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
     "meta": "@_meta_", "class_names": "@class_names", "save_dir": "@ckpt_dir"}

``@_meta_`` is the metadata MONAI's bundle runner read (``--meta_file``, by default the
``metadata.json`` beside the config), so a run with ``--bundle_root`` elsewhere still finds it.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["METADATA_FILE", "ModelMetadataWriter", "metadata_for_classes", "write_model_metadata"]

METADATA_FILE = "metadata.json"

logger = logging.getLogger(__name__)


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


def write_model_metadata(meta: Mapping[str, Any] | str, class_names: Sequence[str], save_dir: str) -> str:
    """Write ``<save_dir>/metadata.json`` (atomically) for ``class_names``; returns its path.

    ``meta``: the bundle's metadata, or the path of its ``metadata.json``.
    """
    if isinstance(meta, (str, os.PathLike)):
        with open(meta) as fh:
            meta = json.load(fh)
    meta = metadata_for_classes(dict(meta), class_names)
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, METADATA_FILE)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w") as fh:
        json.dump(meta, fh, indent=4)
    os.replace(tmp, path)
    return path


class ModelMetadataWriter:
    """Train handler: writes the run's ``metadata.json`` into ``save_dir`` when training starts.

    Without usable metadata (none given, or no ``network_data_format.outputs.pred``) it warns and
    writes nothing: describing the model must never stop a training.

    Args:
        meta: the bundle's metadata (``@_meta_`` in a bundle config) or the path of its ``metadata.json``.
        class_names: the classes the network outputs, background first.
        save_dir: where the weights go (the bundle's ``ckpt_dir``).
    """

    def __init__(self, meta: Mapping[str, Any] | str | None, class_names: Sequence[str], save_dir: str) -> None:
        self.meta = meta
        self.class_names = list(class_names)
        self.save_dir = os.fspath(save_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._write)

    def _write(self, engine: Engine) -> None:
        if not self.meta:
            logger.warning(f"no bundle metadata given: {self.save_dir}/{METADATA_FILE} is not written")
            return
        try:
            write_model_metadata(self.meta, self.class_names, self.save_dir)
        except (OSError, ValueError) as err:
            logger.warning(f"{self.save_dir}/{METADATA_FILE} is not written: {err}")
