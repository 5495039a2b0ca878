"""The app's options, read from ``monailabel start_server ... --conf <key> <value>``.

===========================  ===============================  =====================================================
key                          default                          meaning
===========================  ===============================  =====================================================
``models``                   ``ct_segmentation_3d``           bundle(s) to serve, comma separated, found on disk
``bundles_dir``              repository ``bundles/``          folder holding the bundles
``workspace``                ``<app>/workspace/<studies>``    writable folder: bundle copy, NIfTI cache, scores
``store``                    ``--studies``                    store URI when it is not a local folder (``s3://``)
``image_collection``         ``CT``                           collection whose subjects are the images
``label_collection``         ``seg``                          collection of final labels (``seg_<tag>`` others)
``label_affine_atol``        ``0.001``                        mm an uploaded label's affine may differ by
``epistemic``                ``true``                         MC-dropout scoring + strategy ``epistemic``
``epistemic_samples``        ``5``                            dropout passes per image
``epistemic_dropout``        ``0.2``                          dropout probability while scoring
``epistemic_max_images``     ``0``                            images scored per run (0: all unlabelled)
``tracking_uri``             ``sqlite:///<workspace>/mlflow.db``  MLflow backend when a training asks for MLflow
``preload``                  ``false``                        load the network at start-up
===========================  ===============================  =====================================================
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from monailabel.utils.others.generic import strtobool

__all__ = ["AppConf"]


def _workspace_for(app_dir: str, studies: str) -> str:
    name = os.path.basename(str(studies).rstrip("/")) or "studies"
    digest = hashlib.sha1(str(studies).encode()).hexdigest()[:8]
    return os.path.join(os.path.abspath(app_dir), "workspace", f"{name}-{digest}")


@dataclass(frozen=True)
class AppConf:
    """Parsed ``--conf`` options (see the module docstring)."""

    models: tuple[str, ...]
    workspace: str
    bundles_dir: str | None
    store: str
    image_collection: str
    label_collection: str
    label_affine_atol: float
    epistemic: bool
    epistemic_samples: int
    epistemic_dropout: float
    epistemic_max_images: int
    tracking_uri: str

    @classmethod
    def from_conf(cls, app_dir: str, studies: str, conf: Mapping[str, str]) -> AppConf:
        store = conf.get("store") or studies
        workspace = os.path.abspath(conf.get("workspace") or _workspace_for(app_dir, store))
        models = tuple(m.strip() for m in conf.get("models", "ct_segmentation_3d").split(",") if m.strip())
        if not models:
            raise ValueError("--conf models is empty; give a bundle name, e.g. --conf models ct_segmentation_3d")
        try:
            return cls(
                models=models,
                workspace=workspace,
                bundles_dir=conf.get("bundles_dir") or None,
                store=store,
                image_collection=conf.get("image_collection", "CT"),
                label_collection=conf.get("label_collection", "seg"),
                label_affine_atol=float(conf.get("label_affine_atol", "0.001")),
                epistemic=bool(strtobool(conf.get("epistemic", "true"))),
                epistemic_samples=int(conf.get("epistemic_samples", "5")),
                epistemic_dropout=float(conf.get("epistemic_dropout", "0.2")),
                epistemic_max_images=int(conf.get("epistemic_max_images", "0")),
                tracking_uri=conf.get("tracking_uri") or f"sqlite:///{os.path.join(workspace, 'mlflow.db')}",
            )
        except ValueError as err:
            raise ValueError(f"bad --conf value: {err}") from None
