from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from radiobundles.training import TensorBoardHistogramHandler


def test_parameter_and_gradient_histograms_are_written_each_epoch(run_factory, tmp_path):
    run = run_factory(max_epochs=2)
    writer = SummaryWriter(str(tmp_path))
    TensorBoardHistogramHandler(run.network, summary_writer=writer).attach(run.trainer)
    run.trainer.run()
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    events.Reload()
    tags = events.Tags()["histograms"]
    names = [name for name, _ in run.network.named_parameters()]
    assert {f"params/{n}" for n in names} <= set(tags)
    assert {f"grads/{n}" for n in names} <= set(tags)
    assert [e.step for e in events.Histograms("params/0.weight")] == [1, 2]


def test_interval_must_be_positive(net_factory, tmp_path):
    with pytest.raises(ValueError, match="interval"):
        TensorBoardHistogramHandler(net_factory(), log_dir=str(tmp_path), interval=0)
