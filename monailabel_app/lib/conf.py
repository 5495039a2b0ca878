"""The app's options, read from ``monailabel start_server ... --conf <key> <value>``.

The defaults below live in ``configs/monailabel_app.yaml`` (:func:`app_settings`), with the
app's other fixed settings (strategies, the checkpoint order, size and time limits).

===========================  ===============================  =====================================================
key                          default                          meaning
===========================  ===============================  =====================================================
``models``                   ``ct_segmentation_3d``           bundle(s) to serve, comma separated, or ``all``
``bundles_dir``              repository ``bundles/``          folder holding the bundles
``workspace``                ``<app>/workspace/<studies>``    writable folder: bundle copy, NIfTI cache, scores
``store``                    ``--studies``                    store URI; ``--studies s3://bucket/store`` works too
``image_collection``         ``CT``                           collection whose subjects are the images
``label_collection``         ``seg``                          collection of final labels (``seg_<tag>`` others)
``model``                    (none)                           checkpoint to serve (e.g. ``demo_output/models/model.pt``)
``label_affine_atol``        ``0.001``                        mm an uploaded label's affine may differ by
``epistemic``                ``true``                         MC-dropout scoring + strategy ``epistemic``
``epistemic_samples``        ``5``                            dropout passes per image
``epistemic_dropout``        ``0.2``                          dropout probability while scoring
``epistemic_max_images``     ``0``                            images scored per run (0: all unlabelled)
``tracking_uri``             ``sqlite:///<workspace>/mlflow.db``  MLflow backend when a training asks for MLflow
``preload``                  ``false``                        load the network at start-up
===========================  ===============================  =====================================================

A store on S3: ``--studies s3://bucket/store`` (or ``--conf store s3://bucket/store``), with the
server's environment naming the S3 endpoint and credentials (``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ...; see :mod:`radiobject_adapter.s3env`). MONAI Label takes every
``--studies`` that is not an http(s) URL for a local folder: it creates ``./s3:/bucket/store`` and
passes its real path on; :func:`store_from_studies` recovers the URI from that path.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from monailabel.utils.others.generic import strtobool

from radiobundles.settings import load_settings

__all__ = ["SETTINGS_FILE", "AppConf", "app_settings", "placeholder_root", "store_from_studies"]

SETTINGS_FILE = "monailabel_app.yaml"  # in the repository's configs/


@lru_cache(maxsize=1)
def app_settings() -> dict[str, Any]:
    """The app's declarative defaults: ``configs/monailabel_app.yaml`` (sections ``conf``,
    ``strategies``, ``training``, ``limits``; the file says what each value means).

    Example:
        >>> app_settings()["conf"]["image_collection"]
        'CT'
    """
    return load_settings(SETTINGS_FILE)


def _default(key: str) -> str:
    """The ``--conf`` default of ``key`` as the string ``--conf`` would give (``true``, ``0.2``)."""
    value = app_settings()["conf"][key]
    return str(value).lower() if isinstance(value, bool) else str(value)


# URI schemes of TileDB's object stores, as they look after os.path.realpath ("s3://b/k" -> ".../s3:/b/k")
_FOLDED_URI = re.compile(r"(?:^|/)(s3|gcs|azure|tiledb):/+([^/].*)$")


def _empty_placeholder(path: str) -> bool:
    """True if ``path`` is missing or a folder tree with no file in it (what MONAI Label creates)."""
    if not os.path.exists(path):
        return True
    if not os.path.isdir(path):
        return False
    return all(not files for _root, _dirs, files in os.walk(path))


def store_from_studies(studies: str) -> str:
    """``studies`` as given by MONAI Label, with an object-store URI restored.

    ``monailabel start_server --studies s3://bucket/store`` hands the app
    ``os.path.realpath("s3://bucket/store")``, i.e. ``<cwd>/s3:/bucket/store`` (an empty folder it
    created). Such a path, when it holds no file, is turned back into ``s3://bucket/store``; any
    other value is returned as it is.

    Example:
        >>> store_from_studies("/home/me/s3:/bucket/ct_store")
        's3://bucket/ct_store'
    """
    text = str(studies)
    match = _FOLDED_URI.search(text)
    if match is None or "://" in text or not _empty_placeholder(text):
        return text
    return f"{match.group(1)}://{match.group(2)}"


def placeholder_root(studies: str) -> str | None:
    """The empty ``<cwd>/s3:`` folder MONAI Label created for an object-store ``--studies``, if any
    (the app removes it, so no stray folder named after a URI is left in the working directory)."""
    text = str(studies)
    match = _FOLDED_URI.search(text)
    if match is None or "://" in text:
        return None
    root = text[: match.start(2)].rstrip("/")
    return root if os.path.isdir(root) and _empty_placeholder(root) else None


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
    model: str | None = None

    @classmethod
    def from_conf(cls, app_dir: str, studies: str, conf: Mapping[str, str]) -> AppConf:
        store = conf.get("store") or store_from_studies(studies)
        workspace = os.path.abspath(conf.get("workspace") or _workspace_for(app_dir, store))
        models = tuple(m.strip() for m in conf.get("models", _default("models")).split(",") if m.strip())
        if not models:
            raise ValueError("--conf models is empty; give a bundle name, e.g. --conf models ct_segmentation_3d")
        try:
            return cls(
                models=models,
                workspace=workspace,
                bundles_dir=conf.get("bundles_dir") or None,
                store=store,
                image_collection=conf.get("image_collection", _default("image_collection")),
                label_collection=conf.get("label_collection", _default("label_collection")),
                label_affine_atol=float(conf.get("label_affine_atol", _default("label_affine_atol"))),
                epistemic=bool(strtobool(conf.get("epistemic", _default("epistemic")))),
                epistemic_samples=int(conf.get("epistemic_samples", _default("epistemic_samples"))),
                epistemic_dropout=float(conf.get("epistemic_dropout", _default("epistemic_dropout"))),
                epistemic_max_images=int(conf.get("epistemic_max_images", _default("epistemic_max_images"))),
                tracking_uri=conf.get("tracking_uri") or f"sqlite:///{os.path.join(workspace, 'mlflow.db')}",
                model=os.path.abspath(conf["model"]) if conf.get("model") else None,
            )
        except ValueError as err:
            raise ValueError(f"bad --conf value: {err}") from None
