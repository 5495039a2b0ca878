"""Fine-tuning the bundle on the labels saved so far, through MONAI Label's bundle training path.

:class:`StoreBundleTrainTask` is MONAI Label's ``BundleTrainTask`` (which overrides the
bundle's ``train#dataset#data``, ``validate#dataset#data``, ``train#trainer#max_epochs``,
``train#handlers`` and ``device`` and runs ``train.json``) with these changes:

* a training request may also set a few bundle hyper-parameters (``patch_size``,
  ``batch_size``, ``patches_per_volume``, ``num_workers``, ``cache_rate``, ``val_interval``,
  ``learning_rate``, ``sw_batch_size``, ``pos``, ``neg``); values are type-checked numbers,
  never config expressions;
* with few labelled images the validation split can come out empty; the model is then
  validated on the training images (a warning says so) instead of failing, so the
  checkpoint is still written;
* what 3D Slicer sends works: it posts the whole trainer config of ``/info/`` back with every
  list reduced to its first item, so ``run_id`` arrives as ``""`` (MONAI would then evaluate
  the whole ``train.json``, including the bundle's own datalist from its placeholder
  ``dataset_dir``): an empty ``run_id`` means ``run``, ``dataset_dir`` and the collections
  always name the app's store, and ``model_filename`` offers ``model.pt`` first (see
  :func:`model_choices`);
* ``/info/`` ``train_stats`` reports the running training's epoch, total epochs and best metric
  (and the last run's once it ended) from the ``train_stats.json`` a
  :class:`~monailabel_app.lib.train_stats.TrainStatsWriter` writes (see that module);
* a failed training says why: the cause (the innermost exception of the chain, e.g. the
  bundle's "label ... holds class [3] but the network outputs 3 classes ...", rather than
  MONAI's "Failed to instantiate ...") is the last line of the run's output, so ``/train/``
  ``details`` (MONAI Label keeps the last 20 lines) ends with it, and ``/info/`` ``train_stats``
  carries it as ``error``; the full traceback is logged before it (``/logs/``). Labels holding a
  class beyond the bundle's ``class_names`` stop the run before training, naming the label;
* MLflow, when a request asks for it, logs to a SQLite database in the workspace (MONAI 1.6
  refuses MLflow's file store), with MONAI's default MLflow handlers except that the training
  loss is read from the bundle's non-decollated output (MONAI's default expects a list and
  fails on it); TensorBoard logs always go to the workspace bundle's ``runs/``.

Example (a short run, as the tests do)::

    client.train_start("ct_segmentation_3d", {"max_epochs": 1, "patch_size": [32, 32, 32], "num_workers": 0})
    client.train_start("ct_segmentation_3d", {"max_epochs": 1, "patch_size": 32, "run_id": ""})  # as Slicer sends
"""

from __future__ import annotations

import copy
import glob
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS
from monailabel.config import settings
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.bundle import BundleTrainTask

from monailabel_app.lib.conf import app_settings
from monailabel_app.lib.errors import InvalidRequest, TrainingFailed
from monailabel_app.lib.train_stats import STATS_FILE, read_train_stats, record_failure

__all__ = [
    "OVERRIDES",
    "StoreBundleTrainTask",
    "bundle_overrides",
    "engine_loss",
    "failure_cause",
    "mlflow_settings",
    "model_choices",
]

logger = logging.getLogger(__name__)

# bundle config id -> (type, number of values or None for a scalar)
OVERRIDES: dict[str, tuple[type, int | None]] = {
    "patch_size": (int, 3),
    "batch_size": (int, None),
    "patches_per_volume": (int, None),
    "num_workers": (int, None),
    "cache_rate": (float, None),
    "val_interval": (int, None),
    "learning_rate": (float, None),
    "sw_batch_size": (int, None),
    "pos": (float, None),
    "neg": (float, None),
}


# the checkpoint a fine-tuning starts from, in the order /info/ offers them (Slicer sends the
# first): model.pt is what /infer serves (after a training: the best weights of that run, which
# CheckpointManager restores and writes at the end), so continuing from it is the least surprise;
# best.pt / last.pt are the last run's full checkpoints (best validation / last epoch)
_PREFERRED_MODELS = tuple(app_settings()["training"]["preferred_models"])  # configs/monailabel_app.yaml


def model_choices(models_dir: str) -> list[str]:
    """The ``*.pt`` files a training may start from, ``model.pt`` first (see ``_PREFERRED_MODELS``).

    Example:
        >>> model_choices("bundle/models")  # after a first training
        ['model.pt', 'best.pt', 'last.pt']
    """
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(models_dir, "*.pt")))
    preferred = [name for name in _PREFERRED_MODELS if name in found]
    return preferred + [name for name in found if name not in preferred]


def _number(key: str, value: Any, kind: type) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and int(value) != value):
        raise InvalidRequest(f"training option {key!r} must be a {kind.__name__}, got {value!r}")
    if value < 0 or (kind is int and key != "num_workers" and value < 1):
        raise InvalidRequest(f"training option {key!r} must be positive, got {value!r}")
    return kind(value)


def engine_loss(output: Any) -> float:
    """The loss of a training iteration, whether the engine decollated its output or not."""
    item = output[0] if isinstance(output, (list, tuple)) else output
    return float(item["loss"])


def mlflow_settings(tracking_uri: str) -> dict[str, Any]:
    """MONAI's MLflow tracking settings, logging to ``tracking_uri`` and reading the loss with :func:`engine_loss`."""
    tracking = copy.deepcopy(DEFAULT_MLFLOW_SETTINGS)
    tracking["configs"]["tracking_uri"] = tracking_uri
    tracking["configs"]["trainer"]["output_transform"] = {"_target_": f"{__name__}.engine_loss", "_mode_": "callable"}
    return tracking


def failure_cause(err: BaseException) -> str:
    """One line saying why a training failed: the innermost exception of ``err``'s chain.

    MONAI's config parser wraps a component's error as ``RuntimeError: Failed to instantiate
    ...``; the error a bundle raised on purpose is the one at the bottom of the chain.

    Example:
        >>> failure_cause(RuntimeError("Failed to instantiate"))
        'RuntimeError: Failed to instantiate'
    """
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not e for e in seen):
        seen.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    root = seen[-1]
    lines = [line.strip() for line in str(root).strip().splitlines() if line.strip()]
    if len(lines) > 1 and any("Traceback (most recent call last)" in line for line in lines):
        lines = [lines[0], lines[-1]]  # a DataLoader worker's error: its summary and the worker's exception line
    text = " ".join(" ".join(lines).split()) or repr(root)
    outer = f" (in: {type(err).__name__}: {' '.join(str(err).split())[:200]})" if root is not err else ""
    return f"{type(root).__name__}: {text}{outer}"


def bundle_overrides(request: Mapping[str, Any]) -> dict[str, Any]:
    """The whitelisted bundle hyper-parameters of a training request, checked."""
    out: dict[str, Any] = {}
    for key, (kind, count) in OVERRIDES.items():
        if key not in request or request[key] in (None, ""):
            continue
        value = request[key]
        if count is not None and isinstance(value, str):  # "96" or "96,96,64" typed in Slicer's table
            try:
                value = [float(v) if "." in v else int(v) for v in value.replace(" ", "").split(",")]
            except ValueError:
                raise InvalidRequest(f"training option {key!r} must be numbers like '96' or '96,96,64'") from None
        if count is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value] * count  # one edge for a cube: /info/ offers a scalar (Slicer sends lists' first item)
        if isinstance(value, (list, tuple)) and len(value) == 1 and count:
            value = list(value) * count
        if count is None:
            out[key] = _number(key, value, kind)
        else:
            if not isinstance(value, (list, tuple)) or len(value) != count:
                raise InvalidRequest(f"training option {key!r} must be a list of {count} numbers, got {value!r}")
            out[key] = [_number(key, v, kind) for v in value]
    return out


class StoreBundleTrainTask(BundleTrainTask):
    """``BundleTrainTask`` with checked hyper-parameter overrides and a working tracking default.

    Args:
        path: the (workspace copy of the) bundle.
        conf: the app's ``--conf`` options.
        tracking_uri: MLflow backend used when a request asks for MLflow without giving one.
    """

    def __init__(self, path: str, conf: dict[str, str], tracking_uri: str) -> None:
        super().__init__(path, conf, enable_tracking=False, load_strict=True)
        self.tracking_uri = tracking_uri
        self._overrides: dict[str, Any] = {}
        self._store_overrides: dict[str, Any] = {}

    @property
    def stats_path(self) -> str:
        return os.path.join(self.bundle_path, "models", STATS_FILE)

    def _advertised_overrides(self) -> dict[str, Any]:
        """The bundle's tunable values as /info/ offers them: scalars only (Slicer reduces every
        list to its first item and shows lists as choices), ``patch_size`` as one edge when
        cubic, else as text ``"96,96,64"``."""
        out: dict[str, Any] = {}
        for key, (kind, count) in OVERRIDES.items():
            value = self.bundle_config.get(key)
            if count is not None and isinstance(value, list) and len(value) == count:
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                    # one edge for a cube, else text ("96,96,64"): Slicer would send a list's first item
                    out[key] = kind(value[0]) if len(set(value)) == 1 else ",".join(str(kind(v)) for v in value)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # an expression: not offered (a request may still set a number)
            out[key] = kind(value)
        return out

    def config(self) -> dict[str, Any]:
        options = super().config()
        options["tracking_uri"] = options.get("tracking_uri") or settings.MONAI_LABEL_TRACKING_URI or self.tracking_uri
        options["model_filename"] = model_choices(os.path.join(self.bundle_path, "models"))
        for key, value in self._advertised_overrides().items():
            options.setdefault(key, value)
        return options

    def stats(self) -> dict[str, Any]:
        """The running training's progress, or the last run's (MONAI Label's ``train_stats.json``)."""
        return read_train_stats(self.stats_path)

    def _partition_datalist(self, datalist, request, shuffle=False):
        if not datalist:
            raise ValueError("no image has a final label yet: save at least one label before training")
        train, val = super()._partition_datalist(datalist, request, shuffle)
        if val is not None and not val:
            logger.warning(
                f"validation split of {len(datalist)} labelled image(s) is empty; validating on training images"
            )
            val = list(train)
        self._check_label_classes([*train, *(val or [])])
        return train, val

    def _check_label_classes(self, items: list[dict[str, Any]]) -> None:
        """A label with a class the network cannot output stops the run here, naming the label."""
        store = self._store_overrides.get("dataset_dir")
        names = self.bundle_config.get("class_names")
        if store and isinstance(names, list) and names:
            from radiobundles.labels import check_label_classes

            check_label_classes(items, names, store)

    def _update_overrides(self, overrides):
        # the datalists (train#dataset#data, validate#dataset#data) go in as MONAI Label set them:
        # their store addresses (<store>::<collection>/<id>) pass through the config unchanged
        if "#" in self.bundle_path:  # its paths (stats file, bundle_root) go through the config
            raise ValueError(
                f"the workspace path {self.bundle_path!r} contains '#', which MONAI bundle configs rewrite; move it"
            )
        if str(overrides.get("tracking", "")).lower() == "mlflow":
            overrides["tracking"] = mlflow_settings(overrides.get("tracking_uri") or self.tracking_uri)
        handlers = list(overrides.get("train#handlers") or [])
        handlers.append(
            {
                "_target_": "monailabel_app.lib.train_stats.TrainStatsWriter",
                "path": self.stats_path,
                "evaluator": "@validate#evaluator",
            }
        )
        overrides["train#handlers"] = handlers
        overrides.update(self._store_overrides)
        overrides.update(self._overrides)
        return overrides

    def _check_request(self, request: dict[str, Any]) -> None:
        """Make what 3D Slicer sends (every /info/ option, lists reduced to their first item) valid."""
        run_id = request.get("run_id")
        if run_id in (None, "", [], "None"):
            request["run_id"] = "run"  # "" would make MONAI evaluate the whole train.json
        elif not isinstance(run_id, str) or run_id not in self.bundle_config:
            raise InvalidRequest(f"run_id {run_id!r} is not an expression of train.json; leave it empty (runs 'run')")
        name = request.get("model_filename")
        name = name[0] if isinstance(name, list) and name else name
        choices = model_choices(os.path.join(self.bundle_path, "models"))
        if name in (None, "", "None"):
            request.pop("model_filename", None)
        elif name not in choices:
            raise InvalidRequest(f"model_filename {name!r} is not in the bundle's models/; choose one of {choices}")
        else:
            request["model_filename"] = name
        for key in ("val_split", "max_epochs"):
            if isinstance(request.get(key), str):  # typed into a text cell
                try:
                    request[key] = float(request[key]) if key == "val_split" else int(request[key])
                except ValueError:
                    raise InvalidRequest(f"training option {key!r} must be a number, got {request[key]!r}") from None

    def _store_values(self, datastore: Datastore) -> dict[str, Any]:
        """``dataset_dir`` and collections of the app's store: the bundle's placeholders never apply."""
        access = getattr(datastore, "access", None)
        if access is None:
            return {}
        return {
            "dataset_dir": access.uri,
            "image_collection": access.image_collection,
            "label_collection": access.label_collection,
        }

    def __call__(self, request, datastore: Datastore):
        request = dict(request)
        self._check_request(request)
        self._overrides = bundle_overrides(request)
        self._store_overrides = self._store_values(datastore)
        tracking = request.get("tracking")
        tracking = tracking[0] if isinstance(tracking, list) else tracking
        if tracking and str(tracking).lower() == "mlflow" and not request.get("tracking_uri"):
            request["tracking_uri"] = settings.MONAI_LABEL_TRACKING_URI or self.tracking_uri
        logger.info(f"Bundle overrides from the request: {self._overrides}; store: {self._store_overrides}")
        started = time.time()
        try:
            return super().__call__(request, datastore)
        except Exception as err:
            cause = failure_cause(err)
            logger.error(f"training failed: {cause}", exc_info=True)
            record_failure(self.stats_path, cause, started, request.get("max_epochs"))
            # the last line of the output (what /train/ shows) is then the cause, not a traceback's tail
            raise TrainingFailed(f"training of {request.get('model')!r} failed: {cause}") from None
