"""The app's defaults come from ``configs/monailabel_app.yaml`` and equal the values that were Python literals."""

from __future__ import annotations

from monailabel_app.lib import cache, train
from monailabel_app.lib.conf import AppConf, app_settings

# the literals of monailabel_app before the defaults moved to configs/ (conf.py, main.py, train.py, cache.py)
OLD_CONF = {
    "models": ("ct_segmentation_3d",),
    "image_collection": "CT",
    "label_collection": "seg",
    "label_affine_atol": 0.001,
    "epistemic": True,
    "epistemic_samples": 5,
    "epistemic_dropout": 0.2,
    "epistemic_max_images": 0,
}


def test_conf_defaults_equal_the_old_literals(tmp_path):
    conf = AppConf.from_conf(str(tmp_path), str(tmp_path / "store"), {})
    assert {key: getattr(conf, key) for key in OLD_CONF} == OLD_CONF
    assert isinstance(conf.epistemic_samples, int) and isinstance(conf.label_affine_atol, float)


def test_conf_values_given_on_the_command_line_still_win(tmp_path):
    conf = AppConf.from_conf(str(tmp_path), str(tmp_path / "s"), {"epistemic": "false", "epistemic_samples": "3"})
    assert conf.epistemic is False and conf.epistemic_samples == 3


def test_strategies_checkpoint_order_and_cache_depth_equal_the_old_literals():
    settings = app_settings()
    assert settings["strategies"] == {
        "always": ["random", "first"],
        "epistemic": "Least certain unlabelled image (MC-dropout entropy)",
    }
    assert train._PREFERRED_MODELS == ("model.pt", "best.pt", "last.pt")
    assert cache._KEEP_VERSIONS == 2
