from __future__ import annotations

import copy

import pytest
import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer

from radiobundles.training import BatchNormRecalibration, recalibrate_batchnorm


def _conv_outputs(net: torch.nn.Module, data: list[dict]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [net[0](b["image"]) for b in data]


def test_running_stats_become_the_statistics_of_the_training_features(net_factory, batch_factory):
    net, data = net_factory(), batch_factory(n=4, shift=5.0)
    used = recalibrate_batchnorm(net, (b["image"] for b in data))
    feats = _conv_outputs(net, data)
    # momentum=None averages the per-batch statistics with equal weights
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    expected_var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    bn = net[1]
    assert used == 4
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(bn.running_var, expected_var, atol=1e-5)
    assert int(bn.num_batches_tracked) == 4


def test_eval_mode_normalises_with_the_calibrated_statistics(net_factory, batch_factory):
    net, data = net_factory(), batch_factory(n=3, shift=3.0)
    recalibrate_batchnorm(net, (b["image"] for b in data))
    bn = net[1]
    assert not net.training and not bn.training
    x = data[0]["image"]
    with torch.no_grad():
        expected = net[2](
            torch.nn.functional.batch_norm(
                net[0](x), bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps
            )
        )
        assert torch.allclose(net(x), expected, atol=1e-6)


def test_momentum_is_restored_and_dropout_stays_off_during_calibration(batch_factory):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 1), torch.nn.Dropout(0.5), torch.nn.BatchNorm2d(4, momentum=0.3))
    data = batch_factory(n=2)
    recalibrate_batchnorm(net, (b["image"] for b in data))
    first = net[2].running_mean.clone()
    recalibrate_batchnorm(net, (b["image"] for b in data))
    assert torch.equal(first, net[2].running_mean)  # dropout noise would make the two differ
    assert net[2].momentum == 0.3


def test_calibration_runs_in_fp32_inside_an_autocast_region(net_factory, batch_factory):
    net, seen = net_factory(), []
    net[1].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recalibrate_batchnorm(net, (b["image"] for b in batch_factory(n=2)))
    assert seen == [torch.float32, torch.float32]


def test_a_network_without_batchnorm_is_left_alone():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.InstanceNorm2d(2))
    assert recalibrate_batchnorm(net, iter([torch.zeros(1, 1, 4, 4)])) == 0
    assert not net.training


def test_an_empty_loader_is_an_error(net_factory):
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batchnorm(net_factory(), iter([]))


def test_num_batches_must_be_positive(net_factory):
    with pytest.raises(ValueError, match="num_batches must be >= 1"):
        BatchNormRecalibration(net_factory(), [], num_batches=0)


def _trained_network(net_factory, batch_factory) -> tuple[torch.nn.Module, list[dict]]:
    """A network trained briefly with the default momentum: its running stats lag its weights."""
    torch.manual_seed(0)
    net = net_factory()
    train = batch_factory(n=3, shift=2.0)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=train,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
        loss_function=lambda p, y: torch.nn.functional.cross_entropy(p, y[:, 0].long()),
        decollate=False,
    )
    trainer.run()
    return net, train


def _validation_outputs(net: torch.nn.Module, train: list[dict], calibrate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    val = [{"image": b["image"][:2], "label": b["label"][:2]} for b in train[:1]]
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=val, network=net, decollate=False)
    if calibrate:
        BatchNormRecalibration(net, train, num_batches=None).attach(evaluator)
    evaluator.run()
    return evaluator.state.output["pred"], net[1].running_mean.clone()


def test_validation_output_changes_with_calibration_and_uses_the_calibrated_stats(net_factory, batch_factory):
    net, train = _trained_network(net_factory, batch_factory)
    twin = copy.deepcopy(net)
    plain_pred, plain_mean = _validation_outputs(net, train, calibrate=False)
    calibrated_pred, calibrated_mean = _validation_outputs(twin, train, calibrate=True)

    assert not torch.allclose(plain_pred, calibrated_pred, atol=1e-4)
    assert not torch.allclose(plain_mean, calibrated_mean, atol=1e-4)
    # the calibrated statistics are exactly those of the training features
    feats = _conv_outputs(twin, train)
    expected = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    assert torch.allclose(calibrated_mean, expected, atol=1e-5)
    # and the evaluator (eval mode) normalised with them
    bn = twin[1]
    x = train[0]["image"][:2]
    with torch.no_grad():
        manual = twin[2](
            torch.nn.functional.batch_norm(
                twin[0](x), bn.running_mean, bn.running_var, bn.weight, bn.bias, training=False, eps=bn.eps
            )
        )
    assert torch.allclose(calibrated_pred, manual, atol=1e-5)


def test_handler_recalibrates_at_every_validation_run(net_factory, batch_factory):
    net, data = net_factory(), batch_factory(n=2)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=data[:1], network=net)
    handler = BatchNormRecalibration(net, data, num_batches=1)
    handler.attach(evaluator)
    evaluator.run()
    evaluator.run()
    assert handler.calls == 2
    assert int(net[1].num_batches_tracked) == 1  # reset each time, then one batch


def _calibrate_rank(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from tests.radiobundles.training.conftest import batches, tiny_net

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        net = tiny_net()
        # rank 0 calibrates on 2 batches of one shift, rank 1 on 4 of another: its shard
        data = batches(n=2 + 2 * rank, shift=5.0 * rank, seed=rank)
        recalibrate_batchnorm(net, (b["image"] for b in data))
        torch.save({"net": net[1].state_dict(), "feats": _conv_outputs(net, data)}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_ranks_validate_with_the_statistics_of_all_ranks_batches(tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.start_processes(_calibrate_rank, args=(init, str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    # every batch weighs the same, whichever rank saw it: 2 + 4 batches
    feats = ranks[0]["feats"] + ranks[1]["feats"]
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    expected_var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    for rank in ranks:
        assert torch.allclose(rank["net"]["running_mean"], expected_mean, atol=1e-5)
        assert torch.allclose(rank["net"]["running_var"], expected_var, atol=1e-5)
    assert torch.equal(ranks[0]["net"]["running_mean"], ranks[1]["net"]["running_mean"])
