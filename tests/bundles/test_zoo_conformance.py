"""Every bundle against the Model Zoo's checks, as its CI runs them, offline.

Read from Project-MONAI/model-zoo: ``ci/verify_bundle.py`` (required and preferred files,
``version`` in ``changelog``, ``verify_metadata`` against the schema, ``verify_net_in_out`` and
``ckpt_export`` with MONAI's defaults on ``network_def`` and ``configs/inference.json``),
``.pre-commit-config.yaml`` (``pretty-format-json --no-sort-keys --indent=4``) and
``docs/readme_template.md``; the MONAI Label keys from ``monailabel.tasks.train.bundle``.
The zoo CI downloads the metadata schema; ``data/bundle_metadata_schema.json`` is an offline stand-in
(its ``$comment`` says what it is).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from monai.bundle import verify_metadata

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
SCHEMA = Path(__file__).parent / "data" / "bundle_metadata_schema.json"
SEGMENTATION = ["ct_segmentation_3d", "mri_slice_segmentation_2d"]  # trained by the MONAI Label app
# `pip index versions torch --python-version 3.10 --only-binary=:all:` (and 3.11) on the package
# registry, 2026-12-07: 2.15.0 has no cp310 wheel; the zoo CI runs Python 3.10
TORCH_WITH_PY310_AND_PY311_WHEELS = {"2.14.1", "2.14.0", "2.13.0", "2.12.1", "2.12.0", "2.11.0", "2.10.0"}
# docs/readme_template.md's sections, as the zoo's own bundles name them (mri_classification_3d's README)
README_SECTIONS = ["Model Overview", "Data", "Input", "Output", "Performance", "MONAI Bundle Commands", "License"]


def _meta(name: str) -> dict:
    return json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())


def test_every_shipped_bundle_is_checked() -> None:
    assert {
        "ct_segmentation_3d",
        "mri_slice_segmentation_2d",
        "paired_latent_diffusion_2d",
        "mri_classification_3d",
    } <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_required_and_preferred_files_are_there(name: str) -> None:
    bundle = BUNDLES / name
    for f in ("configs/metadata.json", "LICENSE", "configs/inference.json", "docs/README.md", "large_files.yml"):
        assert (bundle / f).is_file(), f"{name}: {f} missing"
    large = yaml.safe_load((bundle / "large_files.yml").read_text())
    assert isinstance(large.get("large_files"), list)
    for entry in large["large_files"]:
        assert {"path", "url", "hash_val", "hash_type"} <= set(entry)


@pytest.mark.parametrize("name", NAMES)
def test_version_is_in_the_changelog(name: str) -> None:
    meta = _meta(name)
    assert meta["version"] in meta["changelog"]


@pytest.mark.parametrize("name", NAMES)
def test_metadata_is_valid_against_the_schema_with_monais_verify_metadata(name: str, tmp_path: Path) -> None:
    # verify_metadata downloads the schema unless the file is already there: give it the local copy
    local = tmp_path / "eval" / "schema.json"
    local.parent.mkdir()
    shutil.copyfile(SCHEMA, local)
    verify_metadata(meta_file=str(BUNDLES / name / "configs" / "metadata.json"), filepath=str(local))


def test_the_schema_check_can_fail(tmp_path: Path) -> None:
    meta = _meta("ct_segmentation_3d")
    del meta["network_data_format"]["inputs"]["image"]["num_channels"]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    shutil.copyfile(SCHEMA, tmp_path / "schema.json")
    with pytest.raises(ValueError, match="num_channels"):
        verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(tmp_path / "schema.json"))


@pytest.mark.parametrize("name", NAMES)
def test_pins_have_wheels_for_the_zoo_python(name: str) -> None:
    meta = _meta(name)
    assert meta["pytorch_version"] in TORCH_WITH_PY310_AND_PY311_WHEELS
    assert meta["required_packages_version"].get("radiobundles") == _project_version(), "declare the shared package"


def _project_version() -> str:
    text = (BUNDLES.parent / "pyproject.toml").read_text()
    return next(line.split('"')[1] for line in text.splitlines() if line.startswith("version = "))


@pytest.mark.parametrize(
    "path", sorted(BUNDLES.glob("*/configs/*.json")), ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_json_is_as_pretty_format_json_writes_it(path: Path) -> None:
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=4) + "\n", "run pretty-format-json --no-sort-keys --indent=4"


@pytest.mark.parametrize("name", NAMES)
def test_bundle_root_is_the_bundle_folder(name: str) -> None:
    for config in (BUNDLES / name / "configs").glob("*.json"):
        value = json.loads(config.read_text()).get("bundle_root", ".")
        assert value == ".", f"{config.name}: bundle_root {value!r}"


@pytest.mark.parametrize("name", SEGMENTATION)
def test_monai_label_keys_are_literal_components(name: str) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "train.json"))
    for key in ("device", "bundle_root", "network_def", "train#trainer#max_epochs", "train#handlers"):
        assert key in parser, f"{name}: {key}"
    for key in ("train#dataset#data", "validate#dataset#data"):
        assert key in parser and not str(parser[key]).startswith("$"), f"{name}: {key} must be overridable"


@pytest.mark.parametrize("name", NAMES)
def test_readme_has_the_zoo_template_sections_and_states_torchscript(name: str) -> None:
    text = (BUNDLES / name / "docs" / "README.md").read_text()
    headings = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    for section in README_SECTIONS:
        assert any(h.startswith(section) for h in headings), f"{name}: no '{section}' section"
    assert "TorchScript" in text


# -- with MONAI's defaults, as verify_bundle.py runs them (slow: builds the full-size networks) --------


def _monai_bundle(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_verify_net_in_out_passes_with_monais_defaults(name: str, tmp_path: Path) -> None:
    copy = tmp_path / name
    shutil.copytree(BUNDLES / name, copy, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    args = [
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    ]
    if name == "paired_latent_diffusion_2d":
        # the network is the whole DDIM sampling loop: the shapes do not depend on the step count,
        # 50 default steps of the full UNet cost minutes of CPU (the zoo runs this check on a GPU)
        args += ["--num_inference_steps", "1"]
    proc = _monai_bundle([*args, "--bundle_root", str(copy)], copy)
    assert "verified with no error" in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", SEGMENTATION)
def test_ckpt_export_passes_from_fake_weights(name: str, tmp_path: Path) -> None:
    """``verify_torchscript``: the zoo saves the network's fresh state dict as models/model.pt, then exports."""
    import torch
    from monai.bundle import ConfigParser

    copy = tmp_path / name
    shutil.copytree(BUNDLES / name, copy, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    (copy / "models").mkdir()
    parser = ConfigParser()
    parser.read_config(str(copy / "configs" / "inference.json"))
    parser.read_meta(str(copy / "configs" / "metadata.json"))
    torch.save(parser.get_parsed_content("network_def").state_dict(), copy / "models" / "model.pt")
    _monai_bundle(
        ["ckpt_export", "network_def", "--filepath", "models/verify_model.ts", "--ckpt_file", "models/model.pt",
         "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json"],
        copy,
    )  # fmt: skip
    torch.jit.load(str(copy / "models" / "verify_model.ts"))


def test_a_bundle_that_cannot_be_scripted_says_so() -> None:
    text = (BUNDLES / "paired_latent_diffusion_2d" / "docs" / "README.md").read_text()
    assert "TorchScript is not supported" in text
