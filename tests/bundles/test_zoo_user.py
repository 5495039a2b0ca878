"""A Model Zoo user's run: the bundle folder alone, an environment with only what its metadata declares.

Our wheel is built once; for each bundle a fresh venv gets the dependency closure of the pins the
zoo's requirement script derives from ``configs/metadata.json`` (``zoo_user.py``), the bundle folder
is copied alone to a temporary folder, and ``python -m monai.bundle run`` trains one tiny epoch,
evaluates and infers from there, on a NIfTI (or TIF) folder and on a TileDB store. Nothing is
downloaded. Data are made with the repository's environment: that is the user's data, not the bundle.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from radiobundles.resources import bundle_scripts
from tests.bundles.zoo_user import CleanEnv, clean_environment, dependency_closure, zoo_requirements

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
# CPU seconds of every bundle process this module starts (children's rusage), reported at the end
SPENT: dict[str, float] = {}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("wheel_src")
    # build from a clean copy of the tracked files, so build/ and *.egg-info never land in the checkout
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (build / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, build / f)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        str(out),
    ]
    subprocess.run([*cmd, str(build)], check=True, timeout=600)
    (whl,) = out.glob("radiobundles-*.whl")
    return whl


def _metadata(name: str) -> dict:
    return json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())


@pytest.fixture(scope="module")
def envs(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, CleanEnv]]:
    root = tmp_path_factory.mktemp("zoo_envs")
    made: dict[str, CleanEnv] = {}

    def get(name: str) -> CleanEnv:
        if name not in made:
            made[name] = clean_environment(root / name, zoo_requirements(_metadata(name)), wheel)
        return made[name]

    yield get  # type: ignore[misc]
    print("\nzoo-user CPU seconds per bundle step:", json.dumps(SPENT, indent=1))


def _copy_bundle(name: str, dest: Path) -> Path:
    copy = dest / name
    shutil.copytree(BUNDLES / name, copy, ignore=shutil.ignore_patterns("eval", "runs", "*.pt", "*.ts", "__pycache__"))
    return copy


def _run(env: CleanEnv, bundle: Path, label: str, configs: list[str], **overrides) -> str:
    config = configs[0] if len(configs) == 1 else "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [env.python, "-m", "monai.bundle", "run", "--config_file", config, "--meta_file", "configs/metadata.json"]
    for key, value in overrides.items():
        cmd += [f"--{key}", json.dumps(value).replace("false", "False").replace("true", "True")]
    before = _children_cpu()
    proc = subprocess.run(cmd, cwd=bundle, env=env.environ, capture_output=True, text=True, timeout=600)
    SPENT[f"{bundle.name}:{label}"] = round(_children_cpu() - before, 1)
    assert proc.returncode == 0, f"{label}: {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def _importable(env: CleanEnv, module: str) -> bool:
    code = f"import importlib.util as u; raise SystemExit(0 if u.find_spec({module!r}) else 1)"
    return subprocess.run([env.python, "-c", code], env=env.environ, cwd="/", capture_output=True).returncode == 0


@pytest.mark.parametrize("name", ["ct_segmentation_3d", "mri_slice_segmentation_2d", "mri_classification_3d"])
def test_pins_the_zoo_derives_are_what_the_clean_environment_holds(name: str) -> None:
    """Every ``name==version`` the zoo script derives is installed at that version (torch: see README)."""
    pins = zoo_requirements(_metadata(name))
    assert any(p.startswith("radiobundles==") for p in pins), "the shared package must be declared"
    closure = dependency_closure(pins)
    for pin in pins:
        dist, version = pin.split("==")
        if dist in ("radiobundles", "torch"):
            continue  # radiobundles: the wheel under test; torch: 2.14.1 pinned for py3.10 wheels, 2.15.0 here
        assert closure[dist.lower()].version == version, f"{pin} but {closure[dist.lower()].version} is installed"


# -- the runs ---------------------------------------------------------------------------------------

CT_TINY = {
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "network_def#num_res_units": 1,
    "patch_size": [16, 16, 16],
    "num_workers": 0,
    "sw_batch_size": 16,
    "device": "cpu",
    "val_fraction": 0.5,
}


@pytest.fixture(scope="module")
def ct_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    from radiobject_adapter import ingest_niftis
    from radiobject_adapter.synthetic import make_ct_dataset

    root = tmp_path_factory.mktemp("zoo_ct_data")
    ds = make_ct_dataset(str(root / "nifti"), n_subjects=4, shape_range=((24, 24), (24, 24), (16, 16)), seed=2)
    store = str(root / "store")
    assert ingest_niftis(store, {"CT": ds.images_dir, "seg": ds.labels_dir}, progress=False).ok
    return ds.root, store


def test_ct_segmentation_3d_trains_evaluates_and_infers_from_its_folder_alone(envs, ct_data, tmp_path) -> None:
    env = envs("ct_segmentation_3d")
    assert not _importable(env, "monailabel") and not _importable(env, "torchvision")
    nifti, store = ct_data
    bundle = _copy_bundle("ct_segmentation_3d", tmp_path)
    tiny = {**CT_TINY, "max_epochs": 1, "batch_size": 2, "patches_per_volume": 1}
    _run(env, bundle, "train(store)", ["configs/train.json"], dataset_dir=store, **tiny)
    assert (bundle / "models" / "model.pt").is_file()
    _run(env, bundle, "evaluate(store)", ["configs/train.json", "configs/evaluate.json"], dataset_dir=store, **CT_TINY)
    assert (bundle / "eval" / "metrics_summary.json").is_file()
    _run(env, bundle, "inference(store)", ["configs/inference.json"], dataset_dir=store, **CT_TINY)
    _run(
        env,
        bundle,
        "inference(nifti)",
        ["configs/inference.json"],
        dataset_dir=nifti,
        output_dir="eval/nifti",
        **CT_TINY,
    )
    assert len(list((bundle / "eval" / "nifti").glob("*_seg.nii.gz"))) == 4
    _run(env, bundle, "train(nifti)", ["configs/train.json"], dataset_dir=nifti, ckpt_dir="models_nifti", **tiny)
    assert (bundle / "models_nifti" / "model.pt").is_file()


SLICE_TINY = {
    "slice_size": [32, 32],
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "network_def#num_res_units": 1,
    "num_workers": 0,
    "device": "cpu",
}


def test_mri_slice_segmentation_2d_trains_evaluates_and_infers_from_its_folder_alone(envs, ct_data, tmp_path) -> None:
    env = envs("mri_slice_segmentation_2d")
    assert not _importable(env, "monailabel")
    nifti, store = ct_data
    bundle = _copy_bundle("mri_slice_segmentation_2d", tmp_path)
    tiny = {**SLICE_TINY, "max_epochs": 1, "batch_size": 8, "volumes_per_batch": 2, "slices_per_volume": 4}
    both = ["configs/train.json", "configs/evaluate.json"]
    tiny_val = {**tiny, "val_fraction": 0.5, "num_classes": 3}
    _run(env, bundle, "train(store)", ["configs/train.json"], dataset_dir=store, **tiny_val)
    _run(env, bundle, "evaluate(store)", both, dataset_dir=store, **tiny_val)
    _run(env, bundle, "inference(store)", ["configs/inference.json"], dataset_dir=store, num_classes=3, **SLICE_TINY)
    _run(env, bundle, "inference(nifti)", ["configs/inference.json"], dataset_dir=nifti, num_classes=3, **SLICE_TINY)
    assert list((bundle / "eval").rglob("*_seg.nii.gz"))
    _run(env, bundle, "train(nifti)", ["configs/train.json"], dataset_dir=nifti, ckpt_dir="models_nifti", **tiny_val)


CLS_SMALL = {
    "spatial_size": [32, 32, 32],
    "num_workers": 0,
    "network_def#init_features": 8,
    "network_def#growth_rate": 8,
    "network_def#block_config": [1, 2, 2, 2],
    "gradcam_layer": "features.denseblock2",
    "device": "cpu",
}


def test_mri_classification_3d_trains_evaluates_and_infers_from_its_folder_alone(envs, tmp_path) -> None:
    env = envs("mri_classification_3d")
    assert not _importable(env, "monailabel")
    bundle = _copy_bundle("mri_classification_3d", tmp_path)
    with bundle_scripts(BUNDLES / "mri_classification_3d"):
        from scripts.synthetic import make_classification_dataset  # data for the user, made with the bundle's helper
    from radiobject_adapter import ingest_niftis

    ds = make_classification_dataset(str(tmp_path / "nifti"), n_subjects=8, shape_range=((20, 24), (20, 24), (16, 20)))
    store = str(tmp_path / "store")
    assert ingest_niftis(store, {"T1w": ds.folder("T1w")}, obs_meta=ds.subjects_csv, progress=False).ok
    tiny = {**CLS_SMALL, "max_epochs": 1, "batch_size": 2, "val_fraction": 0.5}
    _run(env, bundle, "train(store)", ["configs/train.json"], dataset_dir=store, **tiny)
    _run(env, bundle, "evaluate(store)", ["configs/train.json", "configs/evaluate.json"], dataset_dir=store, **tiny)
    _run(env, bundle, "inference(store)", ["configs/inference.json"], dataset_dir=store, **CLS_SMALL)
    _run(
        env,
        bundle,
        "inference(nifti)",
        ["configs/inference.json"],
        dataset_dir=ds.root,
        output_dir="eval/nifti",
        **CLS_SMALL,
    )


PAIRED_TINY = {
    "patch_size": [32, 32],
    "batch_size": 4,
    "num_workers": 0,
    "train_split": 0.75,
    "latent_channels": 2,
    "ae_channels": [8, 16],
    "ae_norm_groups": 4,
    "ae_res_blocks": 1,
    "unet_channels": [16, 32],
    "unet_attention_levels": [False, True],
    "unet_head_channels": [0, 16],
    "unet_res_blocks": 1,
    "unet_norm_groups": 8,
    "num_inference_steps": 2,
    "cpu_threads": 1,
    "device": "cpu",
}


def test_paired_latent_diffusion_2d_trains_and_generates_from_its_folder_alone(envs, tmp_path) -> None:
    from bundles.paired_latent_diffusion_2d.scripts.synthetic import make_paired_tifs
    from radiobject_adapter.io.tif import ingest_tifs

    env = envs("paired_latent_diffusion_2d")
    assert not _importable(env, "monailabel")
    data = make_paired_tifs(str(tmp_path / "tifs"), n_pairs=4, shape=(40, 36), seed=3)
    store = str(tmp_path / "store")
    assert ingest_tifs(store, {"edente": data.target_dir, "dente": data.condition_dir}, progress=False).ok
    bundle = _copy_bundle("paired_latent_diffusion_2d", tmp_path)
    ae, ldm = "configs/train_autoencoder.json", "configs/train_diffusion.json"
    # the evaluation of this bundle is its validation pass (PSNR/SSIM each epoch); there is no evaluate.json
    _run(env, bundle, "train_autoencoder(store)", [ae], dataset_dir=store, max_epochs=1, **PAIRED_TINY)
    _run(env, bundle, "train_diffusion(store)", [ae, ldm], dataset_dir=store, max_epochs=1, **PAIRED_TINY)
    assert (bundle / "models" / "model_ldm.pt").is_file()
    _run(env, bundle, "inference(tif)", ["configs/inference.json"], dataset_dir=data.root, **PAIRED_TINY)
    _run(
        env,
        bundle,
        "inference(store)",
        ["configs/inference.json"],
        dataset_dir=store,
        output_dir="eval/store",
        **PAIRED_TINY,
    )
    assert len(list((bundle / "eval" / "generated").glob("*.tif"))) == 4
    assert len(list((bundle / "eval" / "store" / "generated").glob("*.tif"))) == 4


DEEPEDIT_TINY = {
    "spatial_size": [24, 24, 16],
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "guidance_sigma": 1,
    "num_workers": 0,
    "device": "cpu",
}


def test_ct_deepedit_3d_trains_evaluates_and_infers_with_clicks_from_its_folder_alone(envs, tmp_path) -> None:
    name = "ct_deepedit_3d"
    test_pins_the_zoo_derives_are_what_the_clean_environment_holds(name)  # its metadata declares what it needs
    env = envs(name)
    assert not _importable(env, "monailabel")
    bundle = _copy_bundle(name, tmp_path)
    with bundle_scripts(BUNDLES / name):
        from scripts.synthetic import make_click_dataset  # data for the user, made with the bundle's helper
    from radiobject_adapter import ingest_niftis

    nifti = str(tmp_path / "nifti")
    ids = make_click_dataset(nifti, n_subjects=4, shape=(24, 24, 16), faint_hu=0, seed=4)
    store = str(tmp_path / "store")
    assert ingest_niftis(store, {"CT": f"{nifti}/imagesTr", "seg": f"{nifti}/labelsTr"}, progress=False).ok
    # one simulated click round per step keeps the run tiny; validation clicks as in training
    tiny = {**DEEPEDIT_TINY, "max_epochs": 1, "max_interactions": 2, "val_fraction": 0.5}
    _run(env, bundle, "train(store)", ["configs/train.json"], dataset_dir=store, **tiny)
    assert (bundle / "models" / "model.pt").is_file()
    _run(env, bundle, "evaluate(store)", ["configs/train.json", "configs/evaluate.json"], dataset_dir=store, **tiny)
    assert (bundle / "eval" / "dice_vs_clicks_summary.csv").is_file() and (
        bundle / "eval" / "dice_vs_clicks.png"
    ).is_file()
    # clicks as MONAI Label passes them: each label's points under its name, for one subject
    clicks = {ids[0]: {"structure_2": [[12, 12, 8]], "background": [[2, 2, 2]]}}
    _run(env, bundle, "inference(store)", ["configs/inference.json"], dataset_dir=store, clicks=clicks, **DEEPEDIT_TINY)
    _run(env, bundle, "inference(nifti)", ["configs/inference.json"], dataset_dir=nifti, output_dir="eval/nifti",
         clicks=clicks, **DEEPEDIT_TINY)  # fmt: skip
    assert len(list((bundle / "eval" / "nifti").glob("*_seg.nii.gz"))) == 4
    _run(env, bundle, "train(nifti)", ["configs/train.json"], dataset_dir=nifti, ckpt_dir="models_nifti", **tiny)
    assert (bundle / "models_nifti" / "model.pt").is_file()
