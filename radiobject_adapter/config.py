"""TileDB contexts and tuning: one place that decides how every array is opened.

Two rules keep loaders safe and fast:

* A TileDB context owns thread pools. A process forked from one that already used TileDB
  (a PyTorch ``DataLoader`` worker under Linux's default ``fork``) must never use the
  inherited context: its pools have no threads behind them and the first read can hang.
  Every context and open array is therefore keyed by the process id, and a fork hook
  drops the inherited ones in the child (without destroying them: their destructors
  would join threads that do not exist there).
* Opening an array costs a round trip (and more on S3); arrays opened for reading are
  cached per process and reused until :func:`configure` changes the settings.

Example:
    >>> from radiobject_adapter import configure, ReadConfig
    >>> configure(read=ReadConfig(concurrency=2))
"""

from __future__ import annotations

import gc
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import tiledb

__all__ = [
    "ReadConfig",
    "S3Config",
    "WriteConfig",
    "configure",
    "ctx_for_process",
    "ctx_for_threads",
    "current_settings",
    "forget_array",
    "get_tiledb_config",
    "get_tiledb_ctx",
    "open_array",
    "open_group",
    "reset_caches",
    "tiledb_config",
    "with_retries",
]

_T = TypeVar("_T")


@dataclass(frozen=True)
class ReadConfig:
    """Read-side tuning.

    Args:
        concurrency: threads TileDB may use to decode one query (``sm.compute_concurrency_level``
            and ``sm.io_concurrency_level``). 1 (default) is best inside DataLoader workers, the
            workers being the parallelism: hand-offs to TileDB's pools cost more than they give
            for patch-sized reads (benchmarks/README.md); raise it for whole-volume reads.
        read_batching: let libtiledb merge the tile reads of a query into batches of up to
            ``vfs.min_batch_size`` (20 MB), gaps included. Off (default): a 64³ read over 32³
            tiles fetches 1.7 MB instead of ~11 MB. Consider turning it on for S3, where fewer,
            larger requests may pay for the extra bytes (not measured: no S3 here).
        malloc_trim: let libtiledb call ``malloc_trim`` after every query (its default). Off
            (default): the next query no longer page-faults all its tile buffers in again.
        tune_allocator: on glibc, keep freed heap memory for reuse (``mallopt`` with
            ``M_MMAP_THRESHOLD`` 32 MiB and ``M_TRIM_THRESHOLD`` 256 MiB) when the first
            context of a process is made; forked workers inherit it.
        memory_budget_mb: budget for one query's result buffers.
        cache_open_arrays: keep arrays open per process (recommended; turn off only to debug).
        max_workers: threads of this package's thread pools that open or read many volumes at
            once (listing a collection, :func:`radiobject_adapter.parallel.map_on_threads`);
            radiobject's name and default (4).
        tile_cache_size_mb: accepted for radiobject's ``ReadConfig``; has no effect, since
            libtiledb 2.26+ has no tile cache (its ``sm.tile_cache_size`` setting is gone).
        retries / retry_backoff_s: a failed read (dropped connection, 5xx that outlasted the
            S3 SDK's own retries) is retried this many times, after ``backoff * 2**attempt``
            seconds, reopening the array each time; opening stores, collections and arrays
            is retried the same way (:func:`with_retries`).
    """

    concurrency: int = 1
    memory_budget_mb: int = 512
    max_workers: int = 4
    tile_cache_size_mb: int | None = None
    cache_open_arrays: bool = True
    retries: int = 3
    retry_backoff_s: float = 0.25
    read_batching: bool = False
    malloc_trim: bool = False
    tune_allocator: bool = True

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_workers", "memory_budget_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ReadConfig.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class WriteConfig:
    """Write-side defaults used by ingest.

    Args:
        compression: a codec, ``"zstd"``, ``"lz4"``, ``"gzip"`` or ``"none"``, optionally after
            ``byteshuffle+`` / ``bitshuffle+`` / ``delta+`` (a TileDB filter pipeline).
            Default ``"byteshuffle+lz4"``: on CT int16 about the size of the ``.nii.gz`` and
            twice as fast to decode as zstd (benchmarks/README.md).
        compression_level: codec level (used by zstd and gzip; lz4 ignores it).
        tile: radiobject's :class:`~radiobject_adapter.ctx.TileConfig` for arrays built with
            radiobject's calls (``Volume.from_numpy`` / ``create`` / ``from_nifti``,
            ``VolumeCollection.from_volumes`` / ``from_niftis``); ``None``: axial tiles there,
            as radiobject. Ingest and ``from_collections`` take their ``tiling`` argument.
    """

    compression: str = "byteshuffle+lz4"
    compression_level: int = 3
    tile: Any = None


@dataclass(frozen=True)
class S3Config:
    """S3 settings. Credentials come from the AWS SDK's default chain (environment
    variables ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``,
    profiles, instance roles) unless given here; they are never written to logs, errors or
    stored metadata, and ``repr`` hides them.

    Args:
        region: bucket region.
        endpoint_override: ``host:port`` of an S3-compatible server (MinIO, moto, ...).
        scheme: ``"https"`` or ``"http"`` (for a server on loopback).
        use_virtual_addressing: ``False`` for path-style addressing (most local servers).
        max_parallel_ops: parallel S3 requests per query.
        multipart_part_size: bytes per multipart upload part.
        connect_max_tries / connect_scale_factor: the S3 SDK retries one request (dropped
            connection, 5xx, timeout) up to ``connect_max_tries`` times, waiting 0 ms, then
            ``2**k * connect_scale_factor`` ms (k = 1, 2, ...): 5 and 100 ride out 3 s of
            outage per request. ``SlowDown`` (503 SlowDown, 429) is retried apart from that,
            up to 100 times 1.25-1.75 s apart; a 5xx answering a ranged read smaller than
            its error body is not retried by the SDK at all (``read_box`` retries it).
        connect_timeout_ms: TCP connect limit per try.
        request_timeout_ms: curl's low-speed limit, in whole seconds (at least 1): a try
            that receives nothing for this long is abandoned (and retried). Not a total
            limit: a slow transfer that progresses is never cut.
        aws_access_key_id / aws_secret_access_key / aws_session_token: explicit credentials.
        endpoint / multipart_part_size_mb / include_credentials: radiobject's names. ``endpoint``
            is a URL (``http://127.0.0.1:9000``, sets ``scheme`` too) or ``host:port`` and
            fills ``endpoint_override``; ``multipart_part_size_mb`` fills
            ``multipart_part_size``; giving both names of one setting with different values
            is an error. ``include_credentials`` is accepted and changes nothing: TileDB's
            S3 SDK reads the same default credential chain (environment, profile, role)
            that radiobject copies from boto3.

    Older S3-compatible servers (moto < 5) do not decode the SDK's checksum-trailer upload
    framing: set ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required`` in the environment for
    them (``radiobject_adapter.testing.S3Server`` does). A server written in Python must run
    in its own process: TileDB-Py holds the GIL during parts of a read.

    New processes take region, endpoint, scheme, addressing, parallel operations and part
    size from the environment (``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ...) when
    radiobject_adapter is imported: see :mod:`radiobject_adapter.s3env`.
    """

    region: str = "us-east-1"
    endpoint_override: str | None = None
    scheme: str = "https"
    use_virtual_addressing: bool = True
    max_parallel_ops: int = 8
    multipart_part_size: int = 8 * 1024 * 1024
    connect_max_tries: int = 5
    connect_scale_factor: int = 100
    connect_timeout_ms: int = 10_000
    request_timeout_ms: int = 10_000
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    multipart_part_size_mb: int | None = None
    include_credentials: bool = True

    def __post_init__(self) -> None:
        if self.endpoint:
            scheme, host = _split_endpoint(self.endpoint)
            if self.endpoint_override is not None and self.endpoint_override != host:
                raise ValueError(
                    f"S3Config got endpoint={self.endpoint!r} and endpoint_override={self.endpoint_override!r}; "
                    "give one of them"
                )
            object.__setattr__(self, "endpoint_override", host)
            if scheme is not None:
                object.__setattr__(self, "scheme", scheme)
        if self.multipart_part_size_mb is not None:
            size = int(self.multipart_part_size_mb) * 1024 * 1024
            if self.multipart_part_size not in (size, _DEFAULT_PART_SIZE):
                raise ValueError(
                    f"S3Config got multipart_part_size_mb={self.multipart_part_size_mb} and "
                    f"multipart_part_size={self.multipart_part_size}; give one of them"
                )
            object.__setattr__(self, "multipart_part_size", size)


_DEFAULT_PART_SIZE = 8 * 1024 * 1024


def _split_endpoint(endpoint: str) -> tuple[str | None, str]:
    """``(scheme or None, host[:port])`` of ``http://host:port`` or a bare ``host:port``."""
    if "://" not in endpoint:
        return None, endpoint.rstrip("/")
    scheme, rest = endpoint.split("://", 1)
    if scheme not in ("http", "https") or not rest.strip("/") or "/" in rest.strip("/"):
        raise ValueError(f"S3 endpoint {endpoint!r} must be http(s)://host[:port] or host:port")
    return scheme, rest.strip("/")


@dataclass(frozen=True)
class _Settings:
    read: ReadConfig = ReadConfig()
    write: WriteConfig = WriteConfig()
    s3: S3Config = S3Config()
    extra: Mapping[str, str] = field(default_factory=dict)

    # radiobject's RadiObjectConfig reads (radiobject_adapter.ctx.get_config returns this)
    @property
    def io(self) -> ReadConfig:
        """radiobject's older name for :attr:`read`."""
        return self.read

    @property
    def tile(self) -> Any:
        """radiobject's older name for ``write.tile``."""
        return self.write.tile

    def to_tiledb_config(self) -> tiledb.Config:
        """The ``tiledb.Config`` of these settings."""
        return tiledb_config(self)

    def to_tiledb_ctx(self) -> tiledb.Ctx:
        """A new ``tiledb.Ctx`` of these settings (for threads of this process only)."""
        return tiledb.Ctx(tiledb_config(self))


class _ProcessState:
    """Contexts and open arrays owned by one process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.ctx: tiledb.Ctx | None = None
        self.arrays: dict[tuple[str, Any], tiledb.Array] = {}


_settings = _Settings()
_state = _ProcessState()
# States inherited through fork are parked here, never destroyed (see module docstring).
_orphaned_states: list[_ProcessState] = []


def _after_fork_in_child() -> None:
    global _state
    _orphaned_states.append(_state)
    _state = _ProcessState()


os.register_at_fork(after_in_child=_after_fork_in_child)
# Garbage of the parent that only the cyclic GC would free (a dropped context or array held
# in a reference cycle, e.g. by an exception's traceback after a failed S3 read) must not be
# finalized in a forked child: its destructor joins threads that do not exist there, and the
# worker hangs or aborts ("std::system_error: Invalid argument"). Objects alive at fork are
# frozen, so the child's GC never touches them; the parent unfreezes them at once.
os.register_at_fork(before=gc.freeze, after_in_parent=gc.unfreeze)
# TileDB-Py warns on every fork after a context exists. Contexts made through this module
# are never used across a fork (see above), so that warning would only be noise for users.
warnings.filterwarnings("ignore", message="TileDB is a multithreading library", category=UserWarning)


def _current_state() -> _ProcessState:
    # Belt and braces for start methods that bypass os.fork hooks.
    if _state.pid != os.getpid():
        _after_fork_in_child()
    return _state


def tiledb_config(settings: _Settings | None = None) -> tiledb.Config:
    """The ``tiledb.Config`` built from the current settings."""
    s = settings or _settings
    cfg: dict[str, str] = {
        "sm.compute_concurrency_level": str(max(1, s.read.concurrency)),
        "sm.io_concurrency_level": str(max(1, s.read.concurrency)),
        "sm.memory_budget": str(s.read.memory_budget_mb * 1024 * 1024),
        "sm.mem.malloc_trim": "true" if s.read.malloc_trim else "false",
        "vfs.s3.region": s.s3.region,
        "vfs.s3.scheme": s.s3.scheme,
        "vfs.s3.use_virtual_addressing": "true" if s.s3.use_virtual_addressing else "false",
        "vfs.s3.max_parallel_ops": str(s.s3.max_parallel_ops),
        "vfs.s3.multipart_part_size": str(s.s3.multipart_part_size),
        "vfs.s3.connect_max_tries": str(s.s3.connect_max_tries),
        "vfs.s3.connect_scale_factor": str(s.s3.connect_scale_factor),
    }
    if not s.read.read_batching:
        cfg["vfs.min_batch_size"] = "0"
        cfg["vfs.min_batch_gap"] = "0"
    if s.s3.endpoint_override:
        cfg["vfs.s3.endpoint_override"] = s.s3.endpoint_override
    cfg["vfs.s3.connect_timeout_ms"] = str(s.s3.connect_timeout_ms)
    cfg["vfs.s3.request_timeout_ms"] = str(s.s3.request_timeout_ms)
    # Only explicit credentials go into the config (whose items() shows them unmasked); the
    # SDK's own chain reads the environment, including session tokens of temporary keys.
    if s.s3.aws_access_key_id and s.s3.aws_secret_access_key:
        cfg["vfs.s3.aws_access_key_id"] = s.s3.aws_access_key_id
        cfg["vfs.s3.aws_secret_access_key"] = s.s3.aws_secret_access_key
        if s.s3.aws_session_token:
            cfg["vfs.s3.aws_session_token"] = s.s3.aws_session_token
    cfg.update(s.extra)
    return tiledb.Config(cfg)


def configure(
    read: ReadConfig | None = None,
    s3: S3Config | None = None,
    write: WriteConfig | None = None,
    extra: Mapping[str, str] | None = None,
    tile: Any = None,
    io: ReadConfig | None = None,
) -> None:
    """Change settings for this process; contexts and open arrays are rebuilt lazily.

    Example:
        >>> configure(s3=S3Config(endpoint_override="127.0.0.1:9000", scheme="http",
        ...                       use_virtual_addressing=False))
    """
    global _settings
    if io is not None:  # radiobject's older name for read=
        if read is not None:
            raise ValueError("give read= or its older name io=, not both")
        read = io
    if tile is not None:  # radiobject's configure(tile=TileConfig(...))
        write = replace(write or _settings.write, tile=tile)
    _settings = replace(
        _settings,
        read=read or _settings.read,
        s3=s3 or _settings.s3,
        write=write or _settings.write,
        extra=dict(extra) if extra is not None else _settings.extra,
    )
    reset_caches()


def current_settings() -> _Settings:
    """The settings in force (read, write, s3)."""
    return _settings


def reset_caches() -> None:
    """Close cached arrays and drop the context of this process."""
    state = _current_state()
    with state.lock:
        for arr in state.arrays.values():
            try:
                arr.close()
            except tiledb.TileDBError:
                pass
        state.arrays.clear()
        state.ctx = None


def tune_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """glibc only (no-op elsewhere): keep freed heap memory for reuse instead of handing it back
    to the kernel after every read, which made each query page-fault its buffers in again.
    Process-wide; forked DataLoader workers inherit it. Returns whether it applied.

    Example:
        >>> tune_allocator()  # called when a process makes its first TileDB context
        True
    """
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, int(mmap_threshold)) == 1
        return ok and libc.mallopt(m_trim_threshold, int(trim_threshold)) == 1
    except (OSError, AttributeError):
        return False


def ctx_for_threads(ctx: tiledb.Ctx | None = None) -> tiledb.Ctx:
    """The context shared by every thread of this process (TileDB contexts are thread-safe);
    ``ctx`` if one is given (radiobject's call shape: ``ctx_for_threads(shared_ctx)``).

    Example:
        >>> ctx_for_threads() is ctx_for_threads()
        True
    """
    if ctx is not None:
        return ctx
    state = _current_state()
    with state.lock:
        if state.ctx is None:
            if _settings.read.tune_allocator:
                tune_allocator()
            state.ctx = tiledb.Ctx(tiledb_config())
        return state.ctx


def ctx_for_process(base_ctx: tiledb.Ctx | None = None) -> tiledb.Ctx:
    """The context of the calling process: a forked DataLoader worker gets its own, new one.

    Use it as ``worker_init_fn`` helper or simply call it inside a worker; it never returns
    a context inherited from the parent. With ``base_ctx`` (radiobject's call shape) it
    returns a new context with that context's configuration.

    Example:
        >>> ctx_for_process() is ctx_for_threads()  # in the process that made it
        True
    """
    if base_ctx is not None:
        return tiledb.Ctx(base_ctx.config())
    return ctx_for_threads()


def get_tiledb_ctx() -> tiledb.Ctx:
    """radiobject's name for the context of this process (same as :func:`ctx_for_threads`).

    Example:
        >>> get_tiledb_ctx() is ctx_for_threads()
        True
    """
    return ctx_for_threads()


def get_tiledb_config() -> tiledb.Config:
    """radiobject's name for :func:`tiledb_config`: the config built from the settings."""
    return tiledb_config()


def with_retries(fn: Callable[[], _T], retries: int | None = None) -> _T:
    """Call ``fn``; on ``tiledb.TileDBError`` call it again after ``retry_backoff_s * 2**attempt``
    seconds, up to ``retries`` (default ``ReadConfig.retries``) times, then raise the last error.

    For read-side opens and listings (stores, groups, arrays): the S3 SDK retries a request
    only ``connect_max_tries`` times, and a 5xx answering a small ranged read not at all.
    """
    settings = _settings.read
    tries = settings.retries if retries is None else retries
    for attempt in range(tries + 1):
        try:
            return fn()
        except tiledb.TileDBError:
            if attempt == tries:
                raise
            time.sleep(settings.retry_backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def open_group(uri: str, mode: str = "r", ctx: tiledb.Ctx | None = None) -> tiledb.Group:
    """A TileDB group opened in ``mode`` (``"r"``/``"w"``), the open retried (:func:`with_retries`).

    Opening a group reads its member and metadata files, and another process may be writing
    one of them at that instant: TileDB then fails with "Read exceeds file size" until the
    file is complete (seen with six writers adding volumes to one collection at once). Use as
    a context manager; the caller closes it.

    Example:
        >>> with open_group("store/collections", "r") as grp:
        ...     names = [m.name for m in grp]
    """
    use = ctx or ctx_for_threads()
    return with_retries(lambda: tiledb.Group(uri, mode, ctx=use))


def open_array(uri: str, timestamp: Any = None, retry: bool = True, ctx: tiledb.Ctx | None = None) -> tiledb.Array:
    """An array opened for reading, cached per process (and per ``timestamp`` and per ``ctx``
    if given); a failed open is retried (:func:`with_retries`) unless ``retry`` is false.

    ``ctx`` (a context the caller made, radiobject's ``Volume(uri, ctx=...)``) opens the
    array with that context; by default the process's own (:func:`ctx_for_threads`).
    Callers must not close it; :func:`reset_caches` does.
    """
    retries = None if retry else 0
    if not _settings.read.cache_open_arrays:
        use = ctx or ctx_for_threads()
        return with_retries(lambda: tiledb.open(uri, "r", ctx=use, timestamp=timestamp), retries)
    state = _current_state()
    key = (uri, timestamp) if ctx is None else (uri, timestamp, id(ctx))
    arr = state.arrays.get(key)
    if arr is None:
        use = ctx or ctx_for_threads()
        arr = with_retries(lambda: tiledb.open(uri, "r", ctx=use, timestamp=timestamp), retries)
        with state.lock:
            state.arrays[key] = arr
    return arr


def forget_array(uri: str) -> None:
    """Drop cached handles of ``uri`` (after it was rewritten by this process)."""
    state = _current_state()
    with state.lock:
        for key in [k for k in state.arrays if k[0] == uri]:
            try:
                state.arrays.pop(key).close()
            except tiledb.TileDBError:
                pass
