"""Before writing: can a store be written at this location? One clear line when it cannot.

Without these checks a bad location surfaces as a raw TileDB error after a long wait: a bucket
that does not exist (or an S3 endpoint that is not set, so the AWS SDK looks for the bucket on
AWS) fails deep in the first listing after minutes of retries; a regular file or a read-only
folder fails in the first group creation. :func:`check_store_location` answers in well under a
second (one bucket lookup with a single try) and says what to do.

Example:
    >>> check_store_location("s3://no-such-bucket/store")
    Traceback (most recent call last):
    StoreLocationError: s3://no-such-bucket/store: bucket 'no-such-bucket' not found at AWS S3 ...
"""

from __future__ import annotations

import errno
import os
import uuid

from radiobject_adapter.errors import StoreLocationError

__all__ = ["StoreLocationError", "check_store_location", "describe_write_error"]

_S3_HINT = (
    "set AWS_ENDPOINT_URL_S3 for an S3-compatible server (e.g. http://127.0.0.1:9000) and "
    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and create the bucket first"
)
_READ_ONLY = ("permission denied", "read-only file system", "operation not permitted")


def _endpoint_description() -> str:
    from radiobject_adapter.config import current_settings

    endpoint = current_settings().s3.endpoint_override
    return f"endpoint {endpoint}" if endpoint else "AWS S3 (AWS_ENDPOINT_URL_S3 is not set)"


def _check_s3(uri: str) -> None:
    import tiledb

    from radiobject_adapter.config import tiledb_config

    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    if not bucket:
        raise StoreLocationError(f"{uri}: no bucket in the URI; write s3://<bucket>/<store>")
    cfg = tiledb_config()
    # one quick try: a wrong endpoint should fail now, not after minutes of retries
    cfg.update({"vfs.s3.connect_max_tries": "1", "vfs.s3.connect_timeout_ms": "3000"})
    try:
        found = tiledb.VFS(ctx=tiledb.Ctx(cfg)).is_bucket(f"s3://{bucket}")
    except tiledb.TileDBError as err:
        cause = str(err).split("[", 1)[0].strip() or type(err).__name__
        raise StoreLocationError(f"{uri}: cannot reach {_endpoint_description()} ({cause}); {_S3_HINT}") from None
    if not found:
        raise StoreLocationError(
            f"{uri}: bucket {bucket!r} not found at {_endpoint_description()}, or these credentials cannot see it; "
            f"{_S3_HINT}"
        )


def _check_local(path: str) -> None:
    if os.path.isfile(path):
        raise StoreLocationError(
            f"{path} is a regular file, not a store; give a folder path (a new one, or an existing store)"
        )
    folder = path
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder.rstrip(os.sep))
        if parent == folder:
            break
        folder = parent
    if folder and os.path.isfile(folder):
        raise StoreLocationError(f"{path}: {folder} is a regular file, so no store can be created under it")
    probe = os.path.join(folder or ".", f".radiobundles-write-probe-{uuid.uuid4().hex}")
    try:  # os.access does not see read-only mounts (or says yes to root): try for real
        with open(probe, "x"):
            pass
        os.remove(probe)
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            what = "store" if folder == path else "folder"
            raise StoreLocationError(
                f"{path}: the {what} {folder} is read-only ({err.strerror}); write to a location you can write "
                "to, or ask for write access (a copy of the store can be written elsewhere)"
            ) from None
        raise


def check_store_location(uri: str) -> None:
    """Raise :class:`StoreLocationError` if no store can be written at ``uri`` (local path or ``s3://``).

    Local: a regular file, or a folder (or the first existing parent of a new one) that cannot be
    written. S3: a bucket that does not exist or cannot be reached with the current endpoint and
    credentials. Other object stores are not checked here.
    """
    text = str(uri)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "s3":
        _check_s3(text)
    elif scheme in ("", "file"):
        _check_local(text[len("file://") :] if scheme == "file" else text)


def describe_write_error(uri: str, err: Exception) -> str | None:
    """One line for a TileDB error met while writing ``uri``, when its cause is the location
    (permissions, S3 access); ``None`` when it is something else (keep the traceback then)."""
    text = str(err)
    low = text.lower()
    if str(uri).lower().startswith("s3://"):
        cause = text.split("[", 1)[0].strip()
        if "403" in text or "accessdenied" in low or "signature" in low or "credentials" in low:
            return f"{uri}: S3 refused the request ({cause}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        return f"{uri}: S3 request failed ({cause}); {_S3_HINT}"
    if any(marker in low for marker in _READ_ONLY):
        return f"{uri}: cannot write there ({text.splitlines()[0][:200]}); the store or its folder is read-only"
    return None
