"""An S3-compatible server (moto) on loopback, for tests and demos of ``s3://`` stores.

The server is moto's own server (``python -m moto.server``), a third-party S3
implementation; nothing in radiobundles is mocked. It runs in a **child process** bound to
``127.0.0.1`` on a free port, gets a bucket, and is stopped on exit.

Two facts decide how it must be run (both measured with libtiledb 2.30 / TileDB-Py 0.36.1):

* **Out of process, never in a thread.** TileDB-Py keeps the GIL while libtiledb loads
  fragment metadata (``PyQuery.submit_read -> allocate_buffers -> est_result_size``). A
  server running as a thread of the same interpreter (moto's ``ThreadedMotoServer``) then
  cannot finish its response, libtiledb waits for bytes that never come and curl aborts
  with "Operation too slow. Less than 1 bytes/sec" after ``vfs.s3.request_timeout_ms``.
* **Request checksums.** The AWS SDK for C++ inside libtiledb (1.11.740) uploads parts with
  ``Content-Encoding: aws-chunked`` and ``x-amz-content-sha256:
  STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (a CRC64NVME trailer). moto < 5 decodes that framing
  for ``PutObject`` only, not for ``UploadPart`` (which TileDB uses for every file), so it
  stores the framing bytes and reads fail ("Reading data past end of serialized data
  size"). With moto < 5 the client must set ``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``
  (read by the SDK whenever a TileDB context creates its S3 client); :attr:`S3Server.client_env`
  holds it, and :func:`s3_server` applies it for the duration of the ``with`` block.
  moto >= 5 decodes the framing itself.

Example:
    >>> from radiobject_adapter.testing import s3_server
    >>> from radiobject_adapter import S3Config, configure
    >>> with s3_server(bucket="demo-bucket") as srv:
    ...     configure(s3=S3Config(**srv.s3_config_kwargs()))   # credentials come from env
    ...     uri = f"s3://{srv.bucket}/store"
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from radiobject_adapter.errors import RadiobundlesError

__all__ = ["S3Server", "S3ServerError", "moto_version", "s3_server"]

HOST = "127.0.0.1"


class S3ServerError(RadiobundlesError, RuntimeError):
    """The loopback S3 server could not be started."""


def moto_version() -> tuple[int, ...]:
    """Installed moto version as a tuple, e.g. ``(4, 2, 6)``; raises if moto is missing."""
    try:
        text = version("moto")
    except PackageNotFoundError as err:
        raise S3ServerError("moto is not installed; install the 's3' extra (pip install 'radiobundles[s3]')") from err
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class S3Server:
    """moto's S3 server in a child process on ``127.0.0.1:<free port>``, with one bucket.

    Args:
        bucket: bucket created once the server answers (S3 naming rules: 3-63 chars).
        region: region the bucket and clients use.
        access_key_id / secret_access_key: credentials handed to clients (moto accepts any;
            random ones by default so tests can check they never leak).
        start_timeout: seconds to wait for the server to answer.
        keep_log: keep the server's request log (``log_path``) after :meth:`stop`; it is
            always kept when the start fails.

    Attributes (after :meth:`start`): ``port``, ``endpoint_url`` (``http://127.0.0.1:PORT``),
    ``endpoint_override`` (``127.0.0.1:PORT``, TileDB's form), ``log_path`` (server log).
    """

    def __init__(
        self,
        bucket: str = "radiobundles-test",
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        start_timeout: float = 30.0,
        keep_log: bool = False,
    ) -> None:
        self.bucket = bucket
        self.region = region
        self.access_key_id = access_key_id or "AKIATEST" + secrets.token_hex(6).upper()
        self.secret_access_key = secret_access_key or secrets.token_urlsafe(30)
        self.start_timeout = start_timeout
        self.keep_log = keep_log
        self.port: int | None = None
        self.log_path: str | None = None
        self.startup_seconds: float | None = None
        self.start_attempts = 0  # server processes started (another only when a free port was taken)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def __repr__(self) -> str:  # never shows the credentials
        state = "running" if self.running else "stopped"
        return f"S3Server(endpoint={self.endpoint_url!r}, bucket={self.bucket!r}, {state})"

    # -- addresses ------------------------------------------------------------------------
    @property
    def endpoint_override(self) -> str | None:
        return f"{HOST}:{self.port}" if self.port else None

    @property
    def endpoint_url(self) -> str | None:
        return f"http://{HOST}:{self.port}" if self.port else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def client_env(self) -> dict[str, str]:
        """Environment a client process needs: credentials, region, and with moto < 5 the
        AWS SDK checksum setting that keeps uploads free of ``aws-chunked`` framing."""
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }
        if moto_version() < (5,):
            env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
            env["AWS_RESPONSE_CHECKSUM_VALIDATION"] = "when_required"
        return env

    @property
    def process_env(self) -> dict[str, str]:
        """Environment for a **new process** (a bundle run, a MONAI Label server) to use this
        server: :attr:`client_env` plus the endpoint and path-style addressing, which
        :mod:`radiobject_adapter.s3env` reads when the process imports radiobject_adapter.

        Example:
            >>> subprocess.run(cmd, env={**os.environ, **srv.process_env})
        """
        assert self.endpoint_url, "start the server first"
        return {**self.client_env, "AWS_ENDPOINT_URL_S3": self.endpoint_url, "RADIOBUNDLES_S3_ADDRESSING_STYLE": "path"}

    def s3_config_kwargs(self, with_credentials: bool = False) -> dict[str, Any]:
        """Keyword arguments for :class:`radiobject_adapter.S3Config` pointing at this server.

        Credentials are left out unless asked for: clients take them from the environment.
        """
        kwargs: dict[str, Any] = {
            "endpoint_override": self.endpoint_override,
            "scheme": "http",
            "use_virtual_addressing": False,
            "region": self.region,
        }
        if with_credentials:
            kwargs["aws_access_key_id"] = self.access_key_id
            kwargs["aws_secret_access_key"] = self.secret_access_key
        return kwargs

    def boto3_client(self) -> Any:
        """A boto3 S3 client for this server (to list or inspect objects in tests)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(proxies={}, retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> S3Server:
        """Start the server, wait until it answers, create the bucket. Idempotent."""
        if self.running:
            return self
        moto_version()  # clear error if missing
        t0 = time.monotonic()
        fd, self.log_path = tempfile.mkstemp(prefix="radiobundles-s3-", suffix=".log")
        os.close(fd)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        last_error: Exception | None = None
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.start_attempts += 1
            self.port = _free_port()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            atexit.register(self.stop)
            try:
                self._wait_until_listening(t0 + self.start_timeout)
                break
            except S3ServerError as err:
                last_error = err
                self._terminate()
        else:
            self.keep_log = True
            self.stop()
            raise S3ServerError(f"moto server did not start: {last_error}; log: {self.log_path}")
        self._create_bucket(t0 + self.start_timeout)
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_until_listening(self, deadline: float) -> None:
        assert self._proc is not None and self.port is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise S3ServerError(f"server exited with code {self._proc.returncode}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise S3ServerError(f"no answer on {HOST}:{self.port} within {self.start_timeout:.0f} s")

    def _create_bucket(self, deadline: float) -> None:
        client = self.boto3_client()
        while True:
            try:
                client.create_bucket(Bucket=self.bucket)
                return
            except Exception as err:  # server still importing its S3 backend
                if time.monotonic() > deadline or not self.running:
                    self.keep_log = True
                    self.stop()
                    raise S3ServerError(f"cannot create bucket {self.bucket!r}: {err}") from None
                time.sleep(0.1)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the server (its data is gone) and close its log. Safe to call twice."""
        self._terminate()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            if not self.keep_log and self.log_path:
                with contextlib.suppress(OSError):
                    os.remove(self.log_path)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def s3_server(bucket: str = "radiobundles-test", set_env: bool = True, **kwargs: Any) -> Iterator[S3Server]:
    """Run an :class:`S3Server`; with ``set_env`` its :attr:`~S3Server.client_env` is put in
    ``os.environ`` for the block (and restored after), so TileDB contexts created inside it,
    and DataLoader workers forked inside it, reach the server.

    Example:
        >>> with s3_server() as srv:
        ...     print(srv.endpoint_url, srv.bucket)
    """
    with S3Server(bucket=bucket, **kwargs) as srv:
        saved = {k: os.environ.get(k) for k in srv.client_env} if set_env else {}
        if set_env:
            os.environ.update(srv.client_env)
        try:
            yield srv
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
