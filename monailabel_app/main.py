"""MONAI Label app: the ``ct_segmentation_3d`` bundle over a radiobundles TileDB store.

Start it (see README.md for 3D Slicer)::

    PATH=.venv/bin:$PATH monailabel start_server --app monailabel_app --studies <store or NIfTI folder> \\
        --conf models ct_segmentation_3d --host 127.0.0.1 --port 8000

A store on S3 (``--studies s3://bucket/store``) needs the endpoint and credentials in the
server's environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ...: lib/conf.py).

* ``/infer/ct_segmentation_3d``: the bundle's ``inference.json`` (pre/post-processing, sliding
  window); the label comes back on the image's grid;
* ``/infer/ct_deepedit_3d`` (``--conf models ct_segmentation_3d,ct_deepedit_3d`` or ``all``): the
  click-guided bundle; 3D Slicer sends each label's points under the label's name
  (``{"structure_1": [[i, j, k]], "background": [...], "label": "structure_1"}``);
* ``/train/ct_segmentation_3d``: fine-tunes on the labels saved so far (``train.json``), in a
  background process, progress in ``/train`` and ``/logs``; scoring refreshes afterwards;
* ``/activelearning/{random,first,epistemic}``: the next image to label; ``epistemic`` takes the
  unlabelled image the model is least sure about (MC-dropout entropy from ``/scoring/epistemic``);
* ``/datastore``: images from the store, every saved label a new TileDB version (a NIfTI folder
  as ``--studies`` uses MONAI Label's own local datastore).

The app makes no network request: bundles and weights come from disk (no model zoo, no SAM).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
from importlib.metadata import PackageNotFoundError, version

import numpy as np
from monai.transforms import AsDiscreted, Invertd, SaveImaged
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.epistemic import Epistemic
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.scoring.epistemic_v2 import EpistemicScoring
from monailabel.utils.async_tasks.utils import tasks as async_tasks

from monailabel_app.lib.bundle import bundle_class_names, find_bundle, prepare_bundle, servable_bundles
from monailabel_app.lib.conf import AppConf, app_settings, placeholder_root
from monailabel_app.lib.datastore import TileDBDatastore
from monailabel_app.lib.errors import ImageNotFound
from monailabel_app.lib.infer import ThreadSafeBundleInferTask
from monailabel_app.lib.local_datastore import CheckedLocalDatastore
from monailabel_app.lib.store_access import check_image_id
from monailabel_app.lib.train import StoreBundleTrainTask
from radiobject_adapter.store.radiobject import is_store
from radiobundles.ct3d import SaveToStored
from radiobundles.labels import class_names_for

logger = logging.getLogger(__name__)

# the app returns predictions to the client (and saves them through the datastore when asked):
# the bundle's own writers (files, store collections) stay out of the infer path
_BUNDLE_WRITERS = [SaveImaged, SaveToStored]
_STRATEGIES = {"random": Random, "first": First}  # configs/monailabel_app.yaml strategies.always names them


def _app_version() -> str:
    try:
        return version("radiobundles")
    except PackageNotFoundError:
        return "unknown"


def is_object_store_uri(uri: str) -> bool:
    """True for ``s3://``, ``gcs://``, ``azure://`` and ``tiledb://`` URIs (not for http(s) studies)."""
    scheme, sep, _rest = str(uri).partition("://")
    return bool(sep) and scheme.lower() in ("s3", "gcs", "azure", "tiledb")


def is_deepedit(name: str) -> bool:
    """True for a click-guided bundle: MONAI Label recognises DeepEdit bundles by name (``*deepedit*``)."""
    return "deepedit" in name.lower()


def _warm_up_writer() -> None:
    """Load ITK's NIfTI writer once, off the request path (the first infer would wait seconds for it)."""
    import itk

    with tempfile.TemporaryDirectory() as tmp:
        itk.imwrite(itk.image_from_array(np.zeros((2, 2, 2), np.uint8)), os.path.join(tmp, "warm.nii.gz"))


class RadiobundlesApp(MONAILabelApp):
    """MONAI Label app serving radiobundles bundles over a TileDB store (or a NIfTI folder)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.app_conf = AppConf.from_conf(app_dir, studies, conf or {})
        if self.app_conf.models == ("all",):  # every bundle that declares MONAI Label support
            models = servable_bundles(app_dir, self.app_conf.bundles_dir)
            self.app_conf = dataclasses.replace(self.app_conf, models=models)
        placeholder = placeholder_root(studies) if self.app_conf.store != studies else None
        if placeholder:  # MONAI Label made ./s3:/bucket/... of an s3:// --studies; the store is on S3
            shutil.rmtree(placeholder, ignore_errors=True)
        os.makedirs(self.app_conf.workspace, exist_ok=True)
        bundles_root = os.path.join(self.app_conf.workspace, "bundles")
        sources = {name: find_bundle(name, app_dir, self.app_conf.bundles_dir) for name in self.app_conf.models}
        self.bundles = {
            name: prepare_bundle(
                sources[name],
                bundles_root,
                # labels and outputs follow the store's label classes (named after the bundle's
                # defaults where the store declares none); a NIfTI folder keeps the bundle's
                class_names_for(self.app_conf.store, self.app_conf.label_collection, bundle_class_names(sources[name]))
                or None,
                self.app_conf.model if name == self.app_conf.models[0] else None,  # --conf model: the first bundle's
            )
            for name in self.app_conf.models
        }
        logger.info(f"Workspace: {self.app_conf.workspace}; bundles: {self.bundles}")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf or {},
            name="radiobundles",
            description="CT segmentation bundles over a TileDB store, with active learning",
            version=_app_version(),
        )

    def init_datastore(self) -> Datastore:
        c = self.app_conf
        # an object-store URI is always a store: if it cannot be opened, say so (StoreNotFoundError
        # names the URI) rather than fall back to a local folder of that name
        if is_store(c.store) or is_object_store_uri(c.store):
            logger.info(f"Datastore: TileDB store {c.store} (images {c.image_collection}, labels {c.label_collection})")
            return TileDBDatastore(
                c.store, c.workspace, c.image_collection, c.label_collection, affine_atol=c.label_affine_atol
            )
        logger.info(f"Datastore: NIfTI folder {self.studies} (MONAI Label local datastore)")
        return CheckedLocalDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, path in self.bundles.items():
            # MONAI Label lets a bundle take clicks (``use_click``) only when told its type; a DeepEdit
            # type also makes /info/ offer Slicer's foreground/background point tools for it
            kind = InferType.DEEPEDIT if is_deepedit(name) else ""
            task = ThreadSafeBundleInferTask(path, self.conf, type=kind, post_filter=_BUNDLE_WRITERS, load_strict=True)
            if not task.is_valid():
                raise RuntimeError(f"bundle {path} cannot serve inference (see the log above)")
            infers[name] = task
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        return {
            name: StoreBundleTrainTask(path, self.conf, tracking_uri=self.app_conf.tracking_uri)
            for name, path in self.bundles.items()
        }

    def init_strategies(self) -> dict[str, Strategy]:
        offered = app_settings()["strategies"]
        strategies: dict[str, Strategy] = {name: _STRATEGIES[name]() for name in offered["always"]}
        if self.app_conf.epistemic:
            strategies["epistemic"] = Epistemic(desc=offered["epistemic"])
        return strategies

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        if not self.app_conf.epistemic:
            return {}
        c = self.app_conf
        path = next(iter(self.bundles.values()))
        # probabilities, not the argmax, so the entropy is the predictive entropy over MC samples
        dropout_infer = ThreadSafeBundleInferTask(
            path,
            self.conf,
            train_mode=True,
            skip_writer=True,
            dropout=c.epistemic_dropout,
            post_filter=[*_BUNDLE_WRITERS, Invertd, AsDiscreted],
            load_strict=True,
        )
        return {
            "epistemic": EpistemicScoring(
                dropout_infer, max_samples=c.epistemic_max_images, simulation_size=c.epistemic_samples
            )
        }

    def _written_by_server(self, path: str) -> bool:
        """True for files MONAI Label itself wrote for this request: uploads (temp files), sessions."""
        if not os.path.isabs(path) or not os.path.isfile(path):
            return False
        roots = [tempfile.gettempdir()]
        if self._sessions is not None:
            roots.append(self._sessions.store_path)
        real = os.path.realpath(path)
        return any(real.startswith(os.path.realpath(root) + os.sep) for root in roots)

    def infer(self, request, datastore=None):
        """MONAI Label's infer, with the image always resolved by the datastore.

        MONAI Label reads ``image`` as a server path whenever such a path exists, before asking the
        datastore: ``../x.nii.gz`` would reach any file, and an id that happens to name a folder in
        the server's working directory would be read instead of the image. Here ``image`` is an
        image id (400 for a path, 404 for an unknown id) unless it is a file the server received
        for this request (an upload or a session).
        """
        image = request.get("image")
        if not isinstance(image, str) or self._written_by_server(image):
            return super().infer(request, datastore)
        datastore = datastore or self.datastore()
        image = check_image_id(image)
        if isinstance(datastore, TileDBDatastore):  # Slicer names a volume it uploaded by its node name
            image = datastore.resolve_upload(image, request.get("client_id"))
        path = datastore.get_image_uri(image)
        if not path:  # the local datastore answers "" for an unknown id
            raise ImageNotFound(f"unknown image id {image!r}; GET /datastore/?output=all lists the ids")
        result = super().infer({**request, "image": path}, datastore)
        if request.get("save_label", False) and result.get("file"):  # as MONAI Label does for an image id
            tag = request.get("label_tag", DefaultLabelTag.ORIGINAL)
            info = {"model": request.get("model"), "params": result.get("params"), "source": "inference"}
            result["label"] = datastore.save_label(image, result["file"], tag, info)
        return result

    def on_init_complete(self):
        super().on_init_complete()
        threading.Thread(target=_warm_up_writer, name="warm-up", daemon=True).start()

    def async_scoring(self, method, params=None):
        """Run the scoring methods in the background; never lose a request for fresh scores.

        MONAI Label's training process asks the server for ``/scoring/<method>``, which is
        dropped while another scoring run is under way, so scores could stay computed with the
        model from before training. Here the training process queues a run behind the current
        one (``/scoring/``); in the server, a request while a run is already queued is covered by
        that run (it scores with the newest model) and queues nothing more.
        """
        if not self._scoring_methods:
            return {}
        if not self._server_mode:
            return self._local_request("/scoring/", params, "Scoring")
        if method is None and any(t["status"] == "SUBMITTED" for t in async_tasks("scoring")):
            return {}
        return super().async_scoring(method, params)
