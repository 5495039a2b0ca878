"""radiobject's ML training guide runs on ours with a literal rename.

Every Python snippet of ``docs/how-to/ml-training.md`` (srdsam/RadiObject, kept verbatim in
``data/ml_training_guide_snippets.txt`` with its source) is executed after replacing
``radiobject`` by ``radiobject_adapter`` and nothing else, on a store built with our API.
The guide leaves ``radi``, ``Volume`` and ``volume_uris`` to the reader; the test defines them.
Snippets that use names an earlier snippet of the page imported run after it in one
namespace, as in a reader's session. Each test then uses what the snippet made (a batch from each loader, the workers' arrays,
the settings, the statistics) and checks it against the store.
"""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from radiobject_adapter import RadiObject, Volume
from radiobject_adapter.config import configure, current_settings, reset_caches

SNIPPETS = Path(__file__).parent / "data" / "ml_training_guide_snippets.txt"
N_SUBJECTS = 16  # the guide's largest batch is 16 and its training loaders drop incomplete batches
SHAPE = (20, 18, 12)


def _snippets() -> dict[str, str]:
    text = SNIPPETS.read_text()
    parts = re.split(r"^## snippet: (.+)$", text, flags=re.M)
    return {title.strip(): body.strip() + "\n" for title, body in zip(parts[1::2], parts[2::2])}


def _renamed(code: str) -> str:
    return code.replace("radiobject", "radiobject_adapter")


@pytest.fixture(scope="module")
def guide_store(tmp_path_factory: pytest.TempPathFactory) -> RadiObject:
    """16 subjects with T1w, FLAIR, CT and seg volumes and a ``diagnosis`` column."""
    root = tmp_path_factory.mktemp("guide")
    rng = np.random.default_rng(0)
    images: dict[str, list[tuple[str, str]]] = {name: [] for name in ("T1w", "FLAIR", "CT", "seg")}
    for i in range(N_SUBJECTS):
        sid = f"sub-{i:02d}"
        for name in images:
            if name == "seg":
                data = np.zeros(SHAPE, np.uint8)
                data[4:10, 5:11, 3:8] = 1 + i % 2
            else:
                data = rng.normal(100 * (i + 1), 10, SHAPE).astype(np.float32)
            path = root / f"{sid}_{name}.nii.gz"
            nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
            images[name].append((str(path), sid))
    table = pd.DataFrame({"obs_subject_id": [f"sub-{i:02d}" for i in range(N_SUBJECTS)]})
    table["diagnosis"] = [i % 3 for i in range(N_SUBJECTS)]
    return RadiObject.from_niftis(str(root / "store"), images=images, obs_meta=table, progress=False)


def _run(title: str, radi: RadiObject, after: tuple[str, ...] = ()) -> dict:
    """Run snippet ``title`` (renamed) after the snippets ``after`` in one namespace, as a
    reader of the page runs them in one session."""
    namespace = {"radi": radi, "Volume": Volume, "volume_uris": [v.uri for v in radi.T1w]}
    for name in (*after, title):
        code = _renamed(_snippets()[name])
        exec(compile(code, f"<ml-training.md: {name}>", "exec"), namespace)
    return namespace


def test_the_guide_has_the_eight_python_snippets_this_test_knows() -> None:
    assert list(_snippets()) == [
        "MONAI Integration",
        "Validation and Inference",
        "Segmentation",
        "TorchIO Integration",
        "Worker Configuration",
        "Context Handling: Threads vs Processes",
        "ReadConfig Tuning",
        "Measuring Cache Performance",
    ]


@pytest.mark.slow
def test_monai_integration_snippet_trains_on_t1w_with_diagnosis_labels(guide_store: RadiObject) -> None:
    ns = _run("MONAI Integration", guide_store)
    batch = next(iter(ns["loader"]))
    assert tuple(batch["image"].shape) == (8, 1, *SHAPE)
    assert set(batch["label"].tolist()) <= {0, 1, 2}
    assert len(ns["loader"]) == N_SUBJECTS // 8


@pytest.mark.slow
def test_validation_and_inference_snippet_keeps_every_volume_in_order(guide_store: RadiObject) -> None:
    ns = _run("Validation and Inference", guide_store)
    val = [b for b in ns["val_loader"]]
    assert sum(len(b["idx"]) for b in val) == N_SUBJECTS
    first = next(iter(ns["inf_loader"]))
    np.testing.assert_allclose(first["image"][0, 0].numpy(), guide_store.T1w.iloc[0].to_numpy())
    assert "label" not in first


@pytest.mark.slow
def test_segmentation_snippet_gives_image_and_mask_patches_padded_to_96(guide_store: RadiObject) -> None:
    ns = _run("Segmentation", guide_store)
    batch = next(iter(ns["loader"]))
    assert tuple(batch["image"].shape) == (4, 1, 96, 96, 96)
    assert tuple(batch["mask"].shape) == (4, 1, 96, 96, 96)
    assert int(batch["mask"].max()) >= 1  # foreground sampling centres patches on the mask
    assert "label" not in batch and set(batch) >= {"idx", "patch_idx", "obs_subject_id"}


def test_torchio_snippet_fails_only_where_the_guide_omits_the_queues_sampler(guide_store: RadiObject) -> None:
    pytest.importorskip("torchio")
    with pytest.raises(TypeError, match="sampler"):
        _run("TorchIO Integration", guide_store)
    # everything before tio.Queue ran: the dataset and the transform
    code = _snippets()["TorchIO Integration"].split("queue = ")[0]
    ns = {"radi": guide_store}
    exec(_renamed(code), ns)
    subject = ns["transform"](ns["dataset"][0])
    assert tuple(subject["T1w"].shape) == (1, *SHAPE)


@pytest.mark.slow
def test_worker_configuration_snippet_stacks_t1w_and_flair(guide_store: RadiObject) -> None:
    # the snippet uses create_training_dataloader as imported by the page's first snippet
    ns = _run("Worker Configuration", guide_store, after=("MONAI Integration",))
    batch = next(iter(ns["loader"]))
    assert tuple(batch["image"].shape) == (16, 2, *SHAPE)


def test_context_snippet_workers_read_the_volumes(guide_store: RadiObject) -> None:
    ns = _run("Context Handling: Threads vs Processes", guide_store)
    uris = [v.uri for v in guide_store.T1w][:4]
    want = [Volume(u).to_numpy() for u in uris]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(ns["thread_worker"], uris))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=lambda: queue.put(float(ns["process_worker"](uris[1]).sum())))
    proc.start()
    total = queue.get(timeout=120)
    proc.join(60)
    assert proc.exitcode == 0
    assert total == pytest.approx(float(want[1].sum()), rel=1e-6)


def test_readconfig_snippet_sets_workers_concurrency_budget_and_s3_part_size(guide_store: RadiObject) -> None:
    before = current_settings()
    try:
        _run("ReadConfig Tuning", guide_store)
        now = current_settings()
        assert (now.read.max_workers, now.read.concurrency) == (8, 2)
        assert now.s3.max_parallel_ops == 32
        assert now.s3.multipart_part_size == 100 * 1024 * 1024
        assert guide_store.T1w.iloc[0].shape == SHAPE  # reads still work under the new settings
    finally:
        configure(read=before.read, s3=before.s3, write=before.write, extra=before.extra)
        reset_caches()


def test_cache_performance_snippet_measures_the_reads(guide_store: RadiObject, capsys: pytest.CaptureFixture) -> None:
    ns = _run("Measuring Cache Performance", guide_store)
    out = capsys.readouterr().out
    assert "Hit rate:" in out and "Parallelization rate:" in out
    stats = ns["stats"]
    assert stats.queries == N_SUBJECTS
    assert stats.s3_stats().read_ops > 0
    assert stats.cache_stats().tile_bytes_read > 0
