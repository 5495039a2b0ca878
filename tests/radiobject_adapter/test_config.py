"""Contexts: one per process (never inherited through fork), arrays kept open, settings applied."""

from __future__ import annotations

import multiprocessing as mp

from radiobject_adapter import RadiObject, ReadConfig, configure, ctx_for_process, ctx_for_threads
from radiobject_adapter.config import current_settings, open_array


def _child_ctx_id(queue) -> None:
    queue.put(id(ctx_for_process()))


def test_forked_child_gets_its_own_context() -> None:
    parent = ctx_for_process()
    assert ctx_for_threads() is parent
    fork = mp.get_context("fork")
    queue = fork.Queue()
    proc = fork.Process(target=_child_ctx_id, args=(queue,))
    proc.start()
    child_id = queue.get(timeout=60)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert child_id != id(parent)  # the parent's context is still alive in the child: ids cannot clash


def test_arrays_are_opened_once_per_process_and_reused(ct_store: str) -> None:
    vol = RadiObject(ct_store).CT.iloc[0]
    vol[0:4, 0:4, 0:4]
    first = open_array(vol.uri)
    vol[4:8, 0:4, 0:4]
    assert open_array(vol.uri) is first


def test_configure_rebuilds_the_context_with_new_settings() -> None:
    before = ctx_for_threads()
    old = current_settings().read
    try:
        configure(read=ReadConfig(concurrency=1, memory_budget_mb=64))
        ctx = ctx_for_threads()
        assert ctx is not before
        assert ctx.config()["sm.compute_concurrency_level"] == "1"
        assert ctx.config()["sm.memory_budget"] == str(64 * 1024 * 1024)
    finally:
        configure(read=old)
