"""The package face is light: importing it, ``radiobundles --help`` and ``radiobundles info``
load neither torch nor MONAI nor TorchIO (nor Ray), and the data layer works with TorchIO absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import radiobject_adapter

HEAVY = ("torch", "monai", "torchio", "ray")  # ray: only the --ray ingest path and the Tune search


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done


def _heavy(modules: list[str]) -> list[str]:
    return sorted({m for m in modules if m.split(".")[0] in HEAVY})


def test_importtime_of_the_package_lists_no_torch_monai_or_torchio() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import radiobject_adapter"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "radiobject_adapter" in imported
    assert "tiledb" in imported  # the measurement sees third-party imports, so an empty result means something
    assert _heavy(imported) == []


CLI_MODULES = """
    import json, sys
    from radiobject_adapter.cli import main
    argv = sys.argv[1:]
    try:
        main(argv)
    except SystemExit:  # --help
        pass
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*argv: str) -> list[str]:
    return json.loads(_python(CLI_MODULES, *argv).stderr.strip().splitlines()[-1])


def test_cli_help_loads_no_torch_monai_or_torchio() -> None:
    assert _heavy(_modules_after("--help")) == []


def test_cli_info_loads_no_torch_monai_torchio_or_nibabel(ct_store: str) -> None:
    modules = _modules_after("info", ct_store)
    assert _heavy(modules) == []
    assert "radiobject_adapter.store.radiobject" in modules
    assert "nibabel" not in modules  # the ingest stack is not needed to describe a store


def test_cli_ingest_of_a_nifti_folder_loads_no_torch_monai_or_torchio(tmp_path) -> None:
    """Every ingest process (the CLI, each worker of a parallel ingest) pays for what it imports."""
    from radiobject_adapter.synthetic import make_ct_dataset

    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=1, shape_range=((12, 13), (12, 13), (8, 9)), seed=1)
    modules = _modules_after("ingest", str(tmp_path / "store"), "-c", f"CT={ds.images_dir}", "--no-progress")
    assert "radiobject_adapter.io.nifti" in modules and "nibabel" in modules  # it did ingest
    assert _heavy(modules) == []


def test_every_public_name_is_importable_from_the_package() -> None:
    for name in radiobject_adapter.__all__:
        assert getattr(radiobject_adapter, name) is not None, name
    assert set(radiobject_adapter.__all__) <= set(dir(radiobject_adapter))
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        radiobject_adapter.NotAName  # noqa: B018


BLOCKED_TORCHIO = """
    import sys
    sys.modules["torchio"] = None  # `import torchio` now raises ImportError, as when it is not installed
    import numpy as np
    import radiobject_adapter
    from radiobject_adapter import DatasetConfig, RadiObject, SegmentationDataset, create_training_dataloader
    from radiobject_adapter.data.patches import read_patch

    radi = RadiObject(sys.argv[1])
    vol = radi.CT.iloc[0]
    patch = read_patch(vol, (2, 2, 2), (8, 8, 8))
    assert patch.shape == (8, 8, 8)
    assert np.array_equal(patch, vol.to_numpy()[2:10, 2:10, 2:10])
    ds = SegmentationDataset(radi.CT, radi.seg, DatasetConfig(loading_mode="patch", patch_size=(8, 8, 8), seed=0))
    assert tuple(ds[0]["image"].shape) == (1, 8, 8, 8) and tuple(ds[0]["label"].shape) == (1, 8, 8, 8)
    loader = create_training_dataloader(radi.CT, batch_size=2, patch_size=(8, 8, 8), num_workers=0,
                                        pin_memory=False, persistent_workers=False)
    assert tuple(next(iter(loader))["image"].shape) == (2, 1, 8, 8, 8)
    try:
        radiobject_adapter.VolumeCollectionSubjectsDataset
    except ImportError as err:
        assert "radiobundles[torchio]" in str(err), err
    else:
        raise AssertionError("VolumeCollectionSubjectsDataset imported although torchio is blocked")
    print("torchio" in sys.modules and sys.modules["torchio"] is not None)
"""


@pytest.mark.slow  # a fresh interpreter importing torch and MONAI: ~20 s
def test_store_and_datasets_work_with_torchio_blocked(ct_store: str) -> None:
    done = _python(BLOCKED_TORCHIO, ct_store)
    assert done.stdout.strip() == "False"
