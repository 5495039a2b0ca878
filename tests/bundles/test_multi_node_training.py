"""Two ``torchrun`` agents as two nodes: ``ct_segmentation_3d`` trained on one ``s3://`` store.

The rehearsal of docs/beyond_one_machine.md ("Several machines") on loopback: two agents
(``torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:<port>``)
stand in for two hosts, gloo on the CPU, each running the bundle's ``train.json`` +
``multi_gpu_train.json`` against the same store on the loopback S3 server (moto, found through
the environment only, as MinIO or AWS would be). The reference is what a user runs on one GPU:
``train.json`` alone in one process (world size 1, run here in the test process to spare a launch)
with the same seed and the same global batch (2 subjects a step; 1 per rank on two nodes).

What is compared, and why not the weights bit for bit: DDP with two ranks is not the single
run reordered. Each rank draws its own patches and augmentations (both ranks seed the same
generators, but for different subjects), and the bundle's ``DiceCELoss(batch=True)`` pools the
Dice over the batch, so the mean of two per-rank losses is not the loss of the joined batch.
What must hold is what DDP promises: both nodes finish, each rank reads only its shard of the
training subjects (disjoint, together the whole datalist), both ranks take as many optimizer
steps as the single run, their weights are identical after training (and equal to the saved
checkpoint), and they stay within the distance that many AdamW steps can move a weight from the
common seeded initialisation of the single run (``2 * lr * steps``: Adam moves a weight by
at most lr a step; a different initialisation, e.g. a wrong seed, breaks it); losses are finite and near the single run's; ``val_mean_dice``, gathered over the
ranks' validation shares, is the same on both ranks and near the single run's.

A small test-only config (``shard_probe.json``, written here) records per rank what the data
layer delivered (the subject of every patch in every batch) and the foreground indexes it opened,
the optimizer steps, the last loss and the weights. It wraps ``run``; it changes no training
setting.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from radiobject_adapter import ingest_niftis
from radiobject_adapter.synthetic import SyntheticDataset
from radiobject_adapter.testing import S3Server
from radiobundles.datalists import make_datalist
from radiobundles.resources import bundle_environ, bundle_scripts

pytestmark = [pytest.mark.timeout(300), pytest.mark.integration, pytest.mark.slow]

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "ct_segmentation_3d"
TRAIN, MULTI_GPU, METADATA = (str(BUNDLE / "configs" / f"{n}.json") for n in ("train", "multi_gpu_train", "metadata"))
# two training subjects (one per node) and two validation subjects: validation is split between
# the ranks as well, and MONAI's DistributedSampler refuses a rank with nothing to validate
N_SUBJECTS = 4
VAL_FRACTION = 0.5
LEARNING_RATE = 1e-3
# as tests/bundles/test_ct_segmentation_3d.py's torchrun test: a network small enough for 16^3 patches
TINY = {
    "network_def#channels": [8, 16, 32],
    "network_def#strides": [2, 2],
    "network_def#num_res_units": 1,
    "patch_size": [16, 16, 16],
    "num_workers": 0,
    "sw_batch_size": 16,
    "sw_overlap": 0.25,
    "val_fraction": VAL_FRACTION,
    "max_epochs": 1,
    "patches_per_volume": 2,
    "learning_rate": LEARNING_RATE,
}
# per rank, in subjects (each brings ``patches_per_volume`` patches): 1 per node, 2 in one process
PER_RANK_BATCH = 1

# Wraps the bundle's ``run`` (the trainer is the bundle's own) with a recorder; rank/world size
# come from the process group ``multi_gpu_train.json`` initialises.
SHARD_PROBE = {
    "probe_file": "$os.path.join(@output_dir, f'rank{dist.get_rank()}.json')",
    "run": [
        "$import json",
        "$import ignite",
        "$@train#trainer.add_event_handler(ignite.engine.Events.ITERATION_COMPLETED, "
        "lambda e: e.state.__dict__.setdefault('probe_subjects', []).append(list(e.state.batch['subject_id'])))",
        "$@train#trainer.run()",
        "$os.makedirs(@output_dir, exist_ok=True)",
        "$torch.save(@network_def.state_dict(), @probe_file[:-5] + '.pt')",
        "$open(@probe_file, 'w').write(json.dumps({"
        "'rank': dist.get_rank(), 'world_size': dist.get_world_size(),"
        "'datalist': [it['subject_id'] for it in @train#datalist],"
        "'sampler': list(iter(@train#sampler)),"
        "'batches': getattr(@train#trainer.state, 'probe_subjects', []),"
        "'foreground_indexes': sorted(@train#datalist[i]['subject_id'] for i in @train#dataset.dataset._foreground),"
        "'optimizer_steps': @train#trainer.state.iteration,"
        "'last_loss': float(@train#trainer.state.output['loss']),"
        "'val_mean_dice': float(@validate#evaluator.state.metrics['val_mean_dice'])}))",
    ],
}


@pytest.fixture(scope="module", autouse=True)
def scripts():
    """The bundle's own ``scripts`` package, for the single-process run in this process."""
    with bundle_scripts(BUNDLE) as package:
        yield package


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_store(point_at_s3: Callable[[], S3Server], synthetic_ct: SyntheticDataset) -> str:
    """The first subjects of ``synthetic_ct`` (CT + seg) in the session's S3 bucket."""
    srv = point_at_s3()
    uri = f"s3://{srv.bucket}/bundles/ct_store_multinode"
    report = ingest_niftis(
        uri, synthetic_ct.first(N_SUBJECTS), obs_meta=synthetic_ct.subject_table, tile_extent=64, progress=False
    )
    assert report.ok, report.summary()
    return uri


def _torchrun(launcher: list[str], configs: list[str], store: str, out: Path, batch_size: int) -> list[str]:
    """The command line a user types on one node (``launcher`` = torchrun's own options)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "monai.bundle", "run"]
    cmd += ["--config_file", "[" + ",".join(f"'{c}'" for c in configs) + "]", "--dataset_dir", store]
    overrides = {**TINY, "batch_size": batch_size, "ckpt_dir": str(out / "models"), "log_dir": str(out / "runs")}
    for key, value in {**overrides, "output_dir": str(out / "probe")}.items():
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return cmd


def _env(srv: S3Server) -> dict[str, str]:
    # the S3 store is found through the environment only; gloo talks over loopback here
    extra = {"TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    return bundle_environ(BUNDLE, {**os.environ, **srv.process_env, **extra})


def _finish(procs: list[subprocess.Popen], timeout: float) -> None:
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, (out or "")[-3000:] + (err or "")[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _one_process(store: str, out: Path, batch_size: int) -> tuple[dict, dict[str, torch.Tensor]]:
    """``python -m monai.bundle run --config_file train.json`` as ``ConfigWorkflow`` in this
    process: what the probe records for a rank, and the trained weights."""
    paths = {"ckpt_dir": str(out / "models"), "log_dir": str(out / "runs"), "output_dir": str(out / "eval")}
    overrides = {**TINY, "batch_size": batch_size, "device": "cpu", **paths}
    wf = ConfigWorkflow(config_file=TRAIN, meta_file=METADATA, logging_file=False, dataset_dir=store, **overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 in the launched ranks
    try:
        wf.initialize()
        trainer = wf.parser.get_parsed_content("train#trainer")
        batches: list[list[str]] = []
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e: batches.append(list(e.state.batch["subject_id"]))
        )
        wf.run()
    finally:
        wf.finalize()
        torch.set_num_threads(threads)
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    record = {
        "world_size": 1,
        "datalist": [it["subject_id"] for it in wf.parser.get_parsed_content("train#datalist")],
        "batches": batches,
        "optimizer_steps": trainer.state.iteration,
        "last_loss": float(trainer.state.output["loss"]),
        "val_mean_dice": float(evaluator.state.metrics["val_mean_dice"]),
    }
    return record, wf.parser.get_parsed_content("network_def").state_dict()


def _probe(out: Path, rank: int) -> dict:
    return json.loads((out / "probe" / f"rank{rank}.json").read_text())


def test_two_torchrun_nodes_train_on_one_s3_store_each_reading_its_shard(
    s3_store: str, use_s3: S3Server, tmp_path: Path
) -> None:
    probe = tmp_path / "shard_probe.json"
    probe.write_text(json.dumps(SHARD_PROBE))
    configs = [TRAIN, MULTI_GPU, str(probe)]
    env = _env(use_s3)
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}

    # two nodes: the same command on each, rendezvous at the first node's address (c10d assigns ranks)
    endpoint = f"127.0.0.1:{_free_port()}"
    multi = tmp_path / "two_nodes"
    launcher = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d"]
    launcher += ["--rdzv_endpoint", endpoint, "--rdzv_id", "ct3d", "--local_addr", "127.0.0.1"]
    launcher += ["--rdzv_conf", "join_timeout=120"]  # a node that never comes fails the other, not CI
    nodes = [subprocess.Popen(_torchrun(launcher, configs, s3_store, multi, PER_RANK_BATCH), **popen) for _ in "ab"]
    _finish(nodes, timeout=240)

    # the reference: what a user runs on one GPU (train.json alone, world size 1), same seed and
    # global batch; in this process (the test's S3 settings, the bundle's scripts) to spare a launch
    ref, reference = _one_process(s3_store, tmp_path / "one_process", 2 * PER_RANK_BATCH)

    ranks = [_probe(multi, 0), _probe(multi, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and ref["world_size"] == 1

    # each rank read only its shard: disjoint, and together the whole training datalist
    datalist = [it["subject_id"] for it in make_datalist(s3_store, split="train", val_fraction=VAL_FRACTION)]
    assert len(datalist) == 2 and all(r["datalist"] == datalist for r in [*ranks, ref])
    shards = [{r["datalist"][i] for i in r["sampler"]} for r in ranks]
    read = [{s for batch in r["batches"] for s in batch} for r in ranks]
    assert read == shards and shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(datalist)
    assert [r["foreground_indexes"] for r in ranks] == [sorted(s) for s in shards]  # no other label opened
    assert all(len(batch) == PER_RANK_BATCH * TINY["patches_per_volume"] for r in ranks for batch in r["batches"])
    assert {s for batch in ref["batches"] for s in batch} == set(datalist)

    # the same optimizer steps; DDP keeps both ranks' weights identical; rank 0 saved them
    assert [r["optimizer_steps"] for r in ranks] == [ref["optimizer_steps"]] * 2 == [1, 1]
    weights = [torch.load(multi / "probe" / f"rank{k}.pt") for k in (0, 1)]
    saved = torch.load(multi / "models" / "model.pt")
    assert not any(k.startswith("module.") for k in saved)
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
        assert torch.equal(value, saved[name]), name
    # from the same seeded initialisation, each AdamW step moves a weight by lr at most (Adam's
    # normalised step, plus weight decay of ~lr * 1e-5 * |w|): a bound, which the first step
    # reaches where the two runs' gradients differ in sign, so it catches a different
    # initialisation (weights ~0.1 apart), not a subtly different gradient
    bound = 2 * LEARNING_RATE * ref["optimizer_steps"] + 1e-5
    # (the optimizer's parameters only: batch norm's running statistics follow each process's own
    # batches, rank 0's in the two-node run and all four patches in the single one)
    learned = [k for k in reference if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(learned) < len(reference)  # the bundle's network has batch norm buffers to leave out
    drift = max((weights[0][k].float() - reference[k].float()).abs().max().item() for k in learned)
    assert drift <= bound, f"two-node weights {drift:.2e} from the single run's, more than {bound:.2e}"
    losses = [r["last_loss"] for r in [*ranks, ref]]
    dice = [r["val_mean_dice"] for r in [*ranks, ref]]
    print(f"drift {drift:.2e} (bound {bound:.2e}); last losses rank0/rank1/single {losses}; val_mean_dice {dice}")
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses), losses
    assert all(abs(loss - ref["last_loss"]) <= 0.5 * abs(ref["last_loss"]) for loss in losses), losses
    # the validation metric: gathered over both ranks' shares, so both report the same value
    assert dice[0] == dice[1] and abs(dice[0] - dice[2]) <= 0.05, dice
    # metrics: one writer (rank 0) in each run, as in the single process
    assert len(list((multi / "runs").glob("events.out.tfevents.*"))) == 1
