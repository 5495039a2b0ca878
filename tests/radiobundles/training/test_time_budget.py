"""RunClock: the time left after each epoch, and a budget that ends training between epochs."""

from __future__ import annotations

import itertools

import pytest
from ignite.engine import Engine, Events

from radiobundles.training import RunClock, format_duration
from radiobundles.training import time_budget as module


@pytest.fixture
def ten_seconds_per_epoch(monkeypatch):
    """A clock that advances 10 s per epoch (each epoch reads it once: at its end)."""
    ticks = itertools.count(0, 10)
    monkeypatch.setattr(module.time, "perf_counter", lambda: float(next(ticks)))


def _engine(clock: RunClock) -> tuple[Engine, list[int]]:
    engine = Engine(lambda e, b: None)
    completed: list[int] = []
    clock.attach(engine)
    engine.add_event_handler(Events.COMPLETED, lambda e: completed.append(e.state.epoch))
    return engine, completed


def test_budget_stops_after_the_last_epoch_that_fits_and_training_completes(ten_seconds_per_epoch, capsys):
    clock = RunClock(budget_s=35)
    engine, completed = _engine(clock)
    engine.run(range(2), max_epochs=10)
    assert engine.state.epoch == 3 and clock.stopped_early_at == 3
    assert completed == [3]  # COMPLETED still fires: the checkpoint handler writes model.pt
    out = capsys.readouterr().out
    assert "epoch 2/10: 20 s so far, about 1 min 20 s left" in out
    assert "time budget 35 s reached: training stops after epoch 3 of 10" in out


def test_without_a_budget_every_epoch_runs(ten_seconds_per_epoch, capsys):
    clock = RunClock()
    engine, _ = _engine(clock)
    engine.run(range(2), max_epochs=4)
    assert engine.state.epoch == 4 and clock.stopped_early_at is None
    assert "epoch 3/4: 30 s so far, about 10 s left" in capsys.readouterr().out


def test_durations_read_as_people_write_them():
    assert [format_duration(s) for s in (42.4, 75, 3725)] == ["42 s", "1 min 15 s", "1 h 2 min"]
    with pytest.raises(ValueError, match="positive"):
        RunClock(budget_s=0)
