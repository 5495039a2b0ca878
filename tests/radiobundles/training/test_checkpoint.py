from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from ignite.engine import Events

from radiobundles.training import CheckpointManager, periodic_checkpoints, save_atomic


def _manager(run, tmp_path, **kwargs) -> CheckpointManager:
    kwargs.setdefault("evaluator", run.evaluator)
    kwargs.setdefault("key_metric_name", "val_mean_dice")
    manager = CheckpointManager(tmp_path, run.network, run.optimizer, run.scheduler, **kwargs)
    manager.attach(run.trainer)
    return manager


def _load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_each_checkpoint_holds_model_optimizer_scheduler_scaler_epoch_step_and_metric(run_factory, tmp_path):
    run = run_factory(values=[0.3, 0.6], max_epochs=2)
    _manager(run, tmp_path, save_interval=1)
    run.trainer.run()
    for name in ("best.pt", "last.pt", "periodic_0002.pt"):
        ckpt = _load(tmp_path / name)
        assert {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "metric"} <= set(ckpt), name
    last = _load(tmp_path / "last.pt")
    assert (last["epoch"], last["step"], last["metric"]) == (2, 6, 0.6)
    assert last["optimizer"]["state"], "optimizer moments are saved"
    assert last["scheduler"]["last_epoch"] == 2
    assert last["scaler"] is None  # AMP is off on CPU: nothing to save


def test_best_follows_the_key_metric_not_the_last_epoch(run_factory, tmp_path):
    run = run_factory(values=[0.2, 0.7, 0.4], max_epochs=3)
    manager = _manager(run, tmp_path, restore_best_at_end=False)
    run.trainer.run()
    best = _load(tmp_path / "best.pt")
    assert (best["epoch"], best["metric"], best["best_metric"]) == (2, 0.7, 0.7)
    assert (manager.best_epoch, _load(tmp_path / "last.pt")["epoch"]) == (2, 3)


def test_periodic_checkpoints_keep_only_the_newest_n(run_factory, tmp_path):
    run = run_factory(max_epochs=5)
    _manager(run, tmp_path, save_interval=1, n_saved=2)
    run.trainer.run()
    assert [epoch for epoch, _ in periodic_checkpoints(tmp_path)] == [4, 5]


def test_retention_also_prunes_files_left_by_an_earlier_run(run_factory, tmp_path):
    for epoch in (1, 2, 3):
        save_atomic({"epoch": epoch}, tmp_path / f"periodic_{epoch:04d}.pt")
    run = run_factory(max_epochs=4)
    _manager(run, tmp_path, save_interval=4, n_saved=2)
    run.trainer.run()
    assert [epoch for epoch, _ in periodic_checkpoints(tmp_path)] == [3, 4]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("simulated crash while saving")


class _ExplodingState:
    """Extra state whose serialisation fails half-way through ``torch.save`` once armed."""

    armed = False

    def state_dict(self) -> dict:
        return {"weights": torch.ones(10_000), "handle": _Unpicklable() if self.armed else None}

    def load_state_dict(self, state: dict) -> None:
        pass


def test_a_crash_while_saving_leaves_the_previous_checkpoint_and_no_partial_file(run_factory, tmp_path):
    run = run_factory(values=[0.5, 0.9], max_epochs=2)
    state = _ExplodingState()
    _manager(run, tmp_path, extra_states={"boom": state})
    # from epoch 2 on, saving fails in the middle of serialisation
    run.trainer.add_event_handler(Events.EPOCH_STARTED(once=2), lambda _: setattr(state, "armed", True))
    with pytest.raises(RuntimeError, match="simulated crash"):
        run.trainer.run()
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]  # no temporary or partial files
    assert _load(tmp_path / "last.pt")["epoch"] == 1
    assert _load(tmp_path / "best.pt")["metric"] == 0.5


@pytest.mark.slow  # a kill test: a new interpreter that imports torch
def test_a_killed_process_never_leaves_a_partial_checkpoint(tmp_path):
    target = tmp_path / "last.pt"
    script = textwrap.dedent(
        f"""
        import os, torch
        from radiobundles.training import save_atomic

        class Kill:
            def __reduce__(self):
                os._exit(17)          # the process dies in the middle of torch.save

        save_atomic({{"epoch": 1, "w": torch.ones(1000)}}, {str(target)!r})
        save_atomic({{"epoch": 2, "w": torch.zeros(100_000), "kill": Kill()}}, {str(target)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    assert _load(target)["epoch"] == 1
    leftovers = [name for name in os.listdir(tmp_path) if name != "last.pt"]
    assert all(not name.endswith(".pt") for name in leftovers), leftovers  # at most an orphaned temp file


def test_resume_continues_from_last_with_the_saved_state(run_factory, tmp_path):
    first = run_factory(values=[0.4, 0.8, 0.6], max_epochs=3, seed=0)
    _manager(first, tmp_path)

    def crash(engine):
        raise KeyboardInterrupt("simulated interruption after epoch 2")

    first.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), crash)
    with pytest.raises(KeyboardInterrupt):
        first.trainer.run()
    saved = _load(tmp_path / "last.pt")
    assert saved["epoch"] == 2

    second = run_factory(values=[0.1], max_epochs=3, seed=1)  # different initial weights
    resumed_states: dict = {}
    second.trainer.add_event_handler(
        Events.EPOCH_STARTED,
        lambda e: resumed_states.setdefault(
            "at_start", ({k: v.clone() for k, v in second.network.state_dict().items()}, e.state.epoch)
        ),
    )
    manager = _manager(second, tmp_path, resume=True, restore_best_at_end=False)
    second.trainer.run()
    weights, epoch_at_start = resumed_states["at_start"]
    assert epoch_at_start == 3  # only the missing epoch ran
    assert all(torch.equal(weights[k], saved["model"][k]) for k in saved["model"])
    assert second.trainer.state.iteration == 9
    assert second.scheduler.last_epoch == 3
    assert manager.best_metric == 0.8  # 0.1 at epoch 3 does not beat the resumed best
    assert _load(tmp_path / "best.pt")["epoch"] == 2


def test_resume_without_a_checkpoint_says_what_to_do(run_factory, tmp_path):
    run = run_factory()
    _manager(run, tmp_path, resume=True)
    with pytest.raises(FileNotFoundError, match="cannot resume: no checkpoint"):
        run.trainer.run()


def test_resume_past_max_epochs_is_refused(run_factory, tmp_path):
    _manager(first := run_factory(max_epochs=3), tmp_path)
    first.trainer.run()
    short = run_factory(max_epochs=2)
    _manager(short, tmp_path, resume=True)
    with pytest.raises(ValueError, match="beyond max_epochs=2"):
        short.trainer.run()


def test_best_weights_are_restored_at_the_end_and_saved_as_the_model(run_factory, tmp_path):
    run = run_factory(values=[0.9, 0.1, 0.2], max_epochs=3)
    _manager(run, tmp_path)
    run.trainer.run()
    best, last = _load(tmp_path / "best.pt")["model"], _load(tmp_path / "last.pt")["model"]
    final = run.network.state_dict()
    model_file = _load(tmp_path / "model.pt")
    assert all(torch.equal(final[k], best[k]) for k in best)
    assert not all(torch.equal(final[k], last[k]) for k in last)
    assert all(torch.equal(model_file[k], best[k]) for k in best)


def test_a_best_file_left_by_an_earlier_run_is_not_restored_into_a_run_that_never_validated(run_factory, tmp_path):
    earlier = run_factory(values=[0.9], max_epochs=1)
    _manager(earlier, tmp_path)
    earlier.trainer.run()
    stale = _load(tmp_path / "best.pt")["model"]
    run = run_factory(max_epochs=2, seed=1)
    _manager(run, tmp_path, evaluator=None, key_metric_name=None)
    run.trainer.run()
    model_file = _load(tmp_path / "model.pt")
    trained = run.network.state_dict()
    assert all(torch.equal(model_file[k], trained[k]) for k in trained)
    assert not all(torch.equal(model_file[k], stale[k]) for k in stale)


def test_a_missing_key_metric_names_the_available_ones(run_factory, tmp_path):
    run = run_factory()
    _manager(run, tmp_path, key_metric_name="val_loss")
    with pytest.raises(KeyError, match=r"no metric 'val_loss'.*val_mean_dice"):
        run.trainer.run()


def test_resume_refuses_a_longer_run_than_the_saved_one_cycle_schedule(run_factory, tmp_path):
    first = run_factory(max_epochs=1)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(first.optimizer, max_lr=0.1, total_steps=3)
    CheckpointManager(tmp_path, first.network, first.optimizer, scheduler).attach(first.trainer)
    first.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: scheduler.step())
    first.trainer.run()
    longer = run_factory(max_epochs=2)
    longer_scheduler = torch.optim.lr_scheduler.OneCycleLR(longer.optimizer, max_lr=0.1, total_steps=6)
    CheckpointManager(tmp_path, longer.network, longer.optimizer, longer_scheduler, resume=True).attach(longer.trainer)
    with pytest.raises(ValueError, match=r"covers 3 steps .1 epochs., this run needs 6.*resume with max_epochs=1"):
        longer.trainer.run()


@pytest.mark.parametrize(("flag", "expected"), [("true", True), ("False", False), ("0", False), (True, True)])
def test_resume_accepts_command_line_spellings(flag, expected, tmp_path):
    assert CheckpointManager(tmp_path, torch.nn.Linear(1, 1), resume=flag).resume is expected


def test_bad_arguments_are_rejected(tmp_path):
    net = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match="resume must be true or false"):
        CheckpointManager(tmp_path, net, resume="maybe")
    with pytest.raises(ValueError, match="key_metric_mode"):
        CheckpointManager(tmp_path, net, key_metric_mode="best")
    with pytest.raises(ValueError, match="n_saved"):
        CheckpointManager(tmp_path, net, n_saved=0)
