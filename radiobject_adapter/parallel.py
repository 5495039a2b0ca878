"""radiobject's ``radiobject.parallel``: contexts for threads and processes, and a thread map.

Example:
    >>> from radiobject_adapter import get_tiledb_ctx
    >>> from radiobject_adapter.parallel import ctx_for_threads, ctx_for_process, map_on_threads
    >>> shared = get_tiledb_ctx()
    >>> arrays = map_on_threads(lambda uri: Volume(uri, ctx=ctx_for_threads(shared)).to_numpy(), uris)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import tiledb

from radiobject_adapter.config import ctx_for_process, ctx_for_threads, current_settings, get_tiledb_config

__all__ = ["WriteResult", "create_worker_ctx", "ctx_for_process", "ctx_for_threads", "map_on_threads"]

T = TypeVar("T")
R = TypeVar("R")


def create_worker_ctx(base_ctx: tiledb.Ctx | None = None) -> tiledb.Ctx:
    """A new context for one worker (thread or process), as radiobject's: with ``base_ctx``'s
    configuration, else the current settings'. Every call makes a new one (each owns thread
    pools: make one per worker, not per read)."""
    return tiledb.Ctx(base_ctx.config() if base_ctx is not None else get_tiledb_config())


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one volume write in a parallel write (radiobject's record)."""

    index: int
    uri: str
    obs_id: str
    success: bool
    error: Exception | None = None


def map_on_threads(
    fn: Callable[[T], R],
    items: Iterable[T],
    max_workers: int | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool, results in input order; the first
    exception raised by ``fn`` is raised here. ``max_workers`` defaults to
    ``ReadConfig.max_workers``; ``progress`` shows a tqdm bar.

    Example:
        >>> map_on_threads(lambda x: x * 2, [1, 2, 3])
        [2, 4, 6]
    """
    todo = list(items)
    if not todo:
        return []
    workers = max_workers or min(current_settings().read.max_workers, len(todo))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(fn, todo)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(todo), desc=desc, unit="item")
        return list(results)
