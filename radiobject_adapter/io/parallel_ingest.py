"""Ingest subjects in several processes or on a Ray cluster, into one store.

The unit of work is a subject (all its files, validated together, as in the serial ingest:
a rejected file costs only its own subject). Each task opens its own
:class:`~radiobject_adapter.store.writer.StoreWriter`, whose writer lease tells the others
that it may be writing; volume names are claimed by creating the array, group members and
``obs`` rows are separate TileDB fragments, so concurrent writers never overwrite each other.
The driver (the process that called :func:`~radiobject_adapter.io.ingest.ingest_niftis`)
holds a lease for the whole run, so no worker cleans up a folder another one is writing.

A worker that dies (killed, out of memory) leaves what a killed serial ingest leaves: an
unregistered folder (never listed, reused later) or a registered volume without its ``obs``
row. Once every task of the round has ended, the driver repairs those rows from the
volumes' metadata, looks again at what the store holds, and runs the unfinished subjects
again: a killed worker's subject is redone, never written twice (``report.redone``).

Engines, none home-made: ``concurrent.futures.ProcessPoolExecutor`` (``workers`` processes,
forked from a fresh ``forkserver`` that imported the ingest stack once), or Ray (``ray_address``): one task
per subject, ``max_retries=0`` so that the driver, which knows the store, decides what to redo.

Example:
    >>> ingest_niftis("s3://bucket/store", {"CT": "imagesTr/", "seg": "labelsTr/"}, workers=4)
    >>> ingest_niftis("store", {"CT": "imagesTr/"}, ray_address="auto")  # a running Ray cluster
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from radiobject_adapter.config import _Settings, configure, current_settings, open_group
from radiobject_adapter.errors import IngestError
from radiobject_adapter.io.subject import (
    IngestFailure,
    IngestReport,
    SubjectRules,
    load_subject,
    write_subject,
)
from radiobject_adapter.store.layout import Tiling, drop_torn_fragments, make_obs_id
from radiobject_adapter.store.writer import StoreWriter

__all__ = ["MAX_ROUNDS", "SubjectJob", "SubjectResult", "ingest_in_parallel", "ingest_subject"]

# A subject whose worker died this many times is reported as failed (the rest of the run goes on).
MAX_ROUNDS = 3
# A local Ray (ray_address="local") on a shared machine: a small object store, no dashboard.
_LOCAL_RAY_OBJECT_STORE_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class SubjectJob:
    """One subject for one worker: where to write, how, and which files (picklable)."""

    store: str
    sid: str
    files: Mapping[str, str]
    todo: Mapping[str, str]
    rules: SubjectRules
    tiling: Tiling
    compression: str | None
    compression_level: int | None
    settings: _Settings
    members: Mapping[str, str]  # collection -> volume name handed out to this job alone


@dataclass(frozen=True)
class SubjectResult:
    sid: str
    written: tuple[str, ...] = ()
    failure: str | None = None
    warnings: tuple[str, ...] = ()


def ingest_subject(job: SubjectJob) -> SubjectResult:
    """Check and write one subject (runs in a worker process or a Ray task)."""
    if current_settings() != job.settings:  # a fresh process: the driver's S3 endpoint, codecs, ...
        s = job.settings
        configure(read=s.read, s3=s.s3, write=s.write, extra=s.extra)
    try:
        loaded, warnings = load_subject(job.sid, job.files, job.rules)
    except (ValueError, OSError, EOFError) as err:
        return SubjectResult(job.sid, failure=str(err))
    writer = StoreWriter(
        job.store, tiling=job.tiling, compression=job.compression, compression_level=job.compression_level
    )
    try:
        written = write_subject(writer, job.sid, loaded, job.todo, job.rules.labels, job.members)
    finally:
        writer.close()
    return SubjectResult(job.sid, tuple(written), warnings=tuple(warnings))


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fresh server process that imported the ingest stack once: a fork
    of the driver could copy its TileDB threads, and spawned workers would each import it again."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["radiobject_adapter.io.parallel_ingest"])
    return ctx


def _pool_round(jobs: list[SubjectJob], workers: int, on_result: Callable[[SubjectResult], None]) -> list[SubjectJob]:
    """Run ``jobs`` in a process pool; returns those whose worker died (pool broken)."""
    died: list[SubjectJob] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context()) as pool:
        # Start every worker at the first submit (CPython does so for "fork"), not one per submit:
        # when a worker dies, the broken pool stops the workers it has at that moment, and its
        # shutdown then waits forever for one started by a later submit (CPython 3.11.7; seen as
        # an ingest hung at the end of the pool after a worker was killed).
        pool._safe_to_dynamically_spawn_children = False
        futures = {}
        for i, job in enumerate(jobs):
            try:
                futures[pool.submit(ingest_subject, job)] = job
            except BrokenProcessPool:  # a worker died (it starts with the first jobs) before the
                died.extend(jobs[i:])  # rest were handed out: they go to the next round
                break
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:  # one worker died: the pool ends every unfinished task
                died.append(futures[fut])
                continue
            on_result(result)
    return died


def _ray_round(jobs: list[SubjectJob], on_result: Callable[[SubjectResult], None]) -> list[SubjectJob]:
    """One Ray task per job; returns the jobs whose worker (or node) died."""
    import ray
    from ray.exceptions import NodeDiedError, OwnerDiedError, WorkerCrashedError

    task = ray.remote(num_cpus=1, max_retries=0)(ingest_subject)
    refs = {task.remote(job): job for job in jobs}
    died: list[SubjectJob] = []
    waiting = list(refs)
    while waiting:  # every task ends before the driver repairs anything (no writer left running)
        done, waiting = ray.wait(waiting, num_returns=1)
        try:
            result = ray.get(done[0])
        except (WorkerCrashedError, NodeDiedError, OwnerDiedError):
            died.append(refs[done[0]])
            continue
        on_result(result)
    return died


def _hand_out_members(
    writer: StoreWriter, pending: Mapping[str, tuple[dict[str, str], dict[str, str]]]
) -> dict[tuple[str, str], str]:
    """A distinct volume name per ``(subject, collection)`` to write, in subject order (the
    names a serial ingest would claim), skipping names registered or with a folder: on S3,
    creating an array is no atomic claim, so concurrent writers must never race for a name."""
    import tiledb

    from radiobject_adapter.store.layout import join_uri

    vfs = tiledb.VFS(ctx=writer.ctx)
    out: dict[tuple[str, str], str] = {}
    for c in sorted({c for _, todo in pending.values() for c in todo}):
        volumes_uri = join_uri(writer.ensure_collection(c), "volumes")
        with open_group(volumes_uri, "r", ctx=writer.ctx) as grp:
            taken = {m.name for m in grp}
        taken |= {u.rstrip("/").rsplit("/", 1)[-1] for u in vfs.ls(volumes_uri)}
        i = 0
        for sid in sorted(pending):
            if c not in pending[sid][1]:
                continue
            while str(i) in taken:
                i += 1
            out[(sid, c)] = str(i)
            taken.add(str(i))
    return out


def _start_ray(ray_address: str, workers: int) -> bool:
    """Connect to (or start, for ``"local"``) a Ray cluster; True if this call started it."""
    try:
        import ray
    except ImportError:
        raise IngestError(
            "--ray needs Ray: pip install 'radiobundles[distributed]' (or pip install 'ray[tune]')"
        ) from None
    if ray.is_initialized():
        return False
    if ray_address == "local":
        ray.init(
            num_cpus=workers,
            include_dashboard=False,
            object_store_memory=_LOCAL_RAY_OBJECT_STORE_BYTES,
            log_to_driver=False,
        )
    else:
        ray.init(address=ray_address, log_to_driver=False)
    return True


def ingest_in_parallel(
    writer: StoreWriter,
    pending: Mapping[str, tuple[dict[str, str], dict[str, str]]],
    rules: SubjectRules,
    report: IngestReport,
    bar: Any,
    workers: int = 2,
    ray_address: str | None = None,
    compression: str | None = None,
    compression_level: int | None = None,
) -> list[str]:
    """Ingest ``pending`` (``sid -> (files, files to write)``) with ``workers`` processes or on
    Ray, filling ``report``; returns the subjects now complete in the store.

    Called by :func:`~radiobject_adapter.io.ingest.ingest_niftis` (``workers=`` / ``ray_address=``),
    whose ``writer`` has checked the store, declared label classes and repaired missing rows.
    """
    settings = current_settings()

    members = _hand_out_members(writer, pending)

    def job(sid: str, todo: Mapping[str, str]) -> SubjectJob:
        files = pending[sid][0]
        names = {c: members[(sid, c)] for c in todo}
        return SubjectJob(
            writer.uri, sid, files, dict(todo), rules, writer.tiling, compression, compression_level, settings, names
        )

    complete: list[str] = []

    def on_result(result: SubjectResult) -> None:
        writer.lease.refresh()  # the driver's lease stays alive while workers write
        files = pending[result.sid][0]
        if result.failure is not None:
            report.failures.append(IngestFailure(result.sid, result.failure, tuple(files.values())))
            bar.update(len(files))
            return
        report.warnings.extend(result.warnings)
        for c in result.written:
            report.written.setdefault(c, []).append(result.sid)
        bar.update(len(files))
        complete.append(result.sid)

    started_ray = _start_ray(ray_address, workers) if ray_address else False
    writer.lease.refresh()
    jobs = [job(sid, todo) for sid, (_, todo) in pending.items()]
    if not jobs:
        return []
    try:
        for round_no in range(1, MAX_ROUNDS + 1):
            died = _ray_round(jobs, on_result) if ray_address else _pool_round(jobs, min(workers, len(jobs)), on_result)
            if not died:
                break
            jobs = _after_deaths(writer, died, report, complete, bar, job, last=round_no == MAX_ROUNDS)
            if not jobs:
                break
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    return complete


def _after_deaths(
    writer: StoreWriter,
    died: Iterable[SubjectJob],
    report: IngestReport,
    complete: list[str],
    bar: Any,
    job: Callable[[str, Mapping[str, str]], SubjectJob],
    last: bool,
) -> list[SubjectJob]:
    """After workers died: repair what they left, and the jobs to run again (none if ``last``)."""
    if not writer.lease.others_alive():  # no worker is running now: a torn group fragment may go
        drop_torn_fragments(writer.uri)
    collections = {c for j in died for c in j.todo}
    present = {c: writer.existing_obs_ids(c) for c in sorted(collections)}  # writes missing rows
    for name, obs_ids in writer.repaired.items():
        report.repaired[name] = sorted(set(report.repaired.get(name, [])) | set(obs_ids))
    again: list[SubjectJob] = []
    for j in died:
        left = {c: p for c, p in j.todo.items() if make_obs_id(j.sid, c) not in present[c]}
        for c in set(j.todo) - set(left):  # written (perhaps row repaired) before the worker died
            report.written.setdefault(c, []).append(j.sid)
        if not left:
            bar.update(len(j.files))
            complete.append(j.sid)
            continue
        if last:
            report.failures.append(
                IngestFailure(
                    j.sid,
                    f"the worker ingesting it died {MAX_ROUNDS} times (killed, or out of memory?); "
                    "run the same command again, with fewer --workers if memory is short",
                    tuple(j.files.values()),
                )
            )
            bar.update(len(j.files))
            continue
        report.redone.append(j.sid)
        again.append(job(j.sid, left))
    return again
