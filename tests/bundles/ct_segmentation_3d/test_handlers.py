"""TensorBoard slice panel (once per validation run) and the progress bar's loss."""

from __future__ import annotations

import torch
from ignite.engine import Engine
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from bundles.ct_segmentation_3d.scripts.handlers import (
    ProgressBarHandler,
    TensorBoardSlicePanel,
    loss_value,
    progress_values,
)


def validation_output():
    image = torch.rand(1, 8, 8, 4)
    label = torch.zeros(1, 8, 8, 4)
    label[0, 2:4, 2:4, 1] = 1
    return [{"image": image, "label": label, "pred": label.clone()}]


def test_one_panel_per_validation_run_at_the_trainer_epoch(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    evaluator = Engine(lambda e, b: validation_output())
    TensorBoardSlicePanel(summary_writer=writer, tag="val/panel").attach(evaluator)
    for epoch in (1, 2):  # as MONAI's Evaluator.run(global_epoch) does for each validation
        evaluator.state.max_epochs, evaluator.state.epoch, evaluator.state.iteration = epoch, epoch - 1, 0
        evaluator.run([0, 1, 2])
    writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    events = acc.Images("val/panel")
    assert [e.step for e in events] == [1, 2]
    assert (events[0].height, events[0].width) == (8, 3 * 8 + 4)


def test_loss_is_read_from_dict_or_decollated_outputs():
    loss = torch.tensor(0.25, requires_grad=True) * 2
    assert loss_value({"loss": loss}) == 0.5
    assert loss_value([{"loss": 0.5}, {"loss": 0.5}]) == 0.5
    assert loss_value({"pred": 1}) is None
    assert progress_values({"loss": 0.5}) == {"loss": 0.5} and progress_values({}) == {}


def test_progress_bar_attaches_like_a_monai_handler():
    engine = Engine(lambda e, b: {"loss": torch.tensor(1.0)})
    ProgressBarHandler().attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert engine.state.iteration == 2
