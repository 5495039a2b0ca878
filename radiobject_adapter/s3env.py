"""S3 settings from environment variables, so that every process reaches the same S3 server.

:func:`radiobject_adapter.configure` changes the settings of the calling process only. A bundle
run (``python -m monai.bundle run ... --dataset_dir s3://bucket/store``), a MONAI Label server
(``monailabel start_server --conf store s3://...``), its training and scoring subprocesses and
``spawn``-started DataLoader workers are new interpreters: they learn where the S3 server is
from the environment, read when :mod:`radiobject_adapter` is imported.

Standard AWS variables are used wherever AWS defines one:

===================================  ==========================================================
variable                             meaning
===================================  ==========================================================
``AWS_ENDPOINT_URL_S3``              endpoint URL of an S3-compatible server, e.g.
                                     ``http://127.0.0.1:9000`` (scheme and ``host:port``)
``AWS_ENDPOINT_URL``                 the same, for every AWS service (used when the S3 one is unset)
``AWS_REGION`` / ``AWS_DEFAULT_REGION``  bucket region (first one set wins)
``RADIOBUNDLES_S3_ADDRESSING_STYLE`` ``path`` or ``virtual``; default ``path`` when an endpoint
                                     URL is set (S3-compatible servers), else ``virtual`` (AWS)
``RADIOBUNDLES_S3_MAX_PARALLEL_OPS`` parallel S3 requests per query (``S3Config.max_parallel_ops``)
``RADIOBUNDLES_S3_MULTIPART_PART_SIZE``  bytes per multipart upload part
===================================  ==========================================================

Credentials are deliberately **not** read here: the AWS SDK inside libtiledb reads
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` (and profiles, roles)
itself, so they never pass through our settings, logs or error messages.

Settings given with :func:`~radiobject_adapter.configure` in a process win over the
environment: the environment only sets the starting point of each process.

Example:
    $ AWS_ENDPOINT_URL=http://127.0.0.1:9000 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
        python -m monai.bundle run --config_file bundles/ct_segmentation_3d/configs/train.json \\
        --dataset_dir s3://bucket/ct_store

    >>> from radiobject_adapter.s3env import s3_config_from_env
    >>> s3_config_from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}).endpoint_override
    '127.0.0.1:9000'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from radiobject_adapter.config import S3Config, configure, current_settings
from radiobject_adapter.errors import S3EnvError

__all__ = ["ENV_VARS", "S3EnvError", "apply_s3_env", "s3_config_from_env"]

ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
ADDRESSING_VAR = "RADIOBUNDLES_S3_ADDRESSING_STYLE"
PARALLEL_OPS_VAR = "RADIOBUNDLES_S3_MAX_PARALLEL_OPS"
PART_SIZE_VAR = "RADIOBUNDLES_S3_MULTIPART_PART_SIZE"
ENV_VARS = (*ENDPOINT_VARS, *REGION_VARS, ADDRESSING_VAR, PARALLEL_OPS_VAR, PART_SIZE_VAR)


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _endpoint(name: str, value: str) -> tuple[str, str]:
    """``(scheme, host:port)`` of an endpoint URL; a bare ``host:port`` means https."""
    parts = urlsplit(value if "://" in value else f"https://{value}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise S3EnvError(f"{name}={value!r} is not an endpoint URL; expected e.g. http://127.0.0.1:9000")
    if parts.username or parts.password:
        # never echo the value: it holds credentials
        raise S3EnvError(f"{name} must not hold credentials; use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if parts.path.strip("/") or parts.query:
        raise S3EnvError(f"{name}={value!r}: an S3 endpoint URL is scheme://host[:port], without a path")
    return parts.scheme, parts.netloc


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise S3EnvError(f"{name}={value!r} must be a positive integer")
    return number


def s3_config_from_env(env: Mapping[str, str] | None = None, base: S3Config | None = None) -> S3Config | None:
    """The :class:`S3Config` the environment asks for, on top of ``base`` (default: defaults);
    ``None`` when none of :data:`ENV_VARS` is set.

    Raises:
        S3EnvError: a variable holds an unusable value.
    """
    env = os.environ if env is None else env
    if not any(env.get(name, "").strip() for name in ENV_VARS):
        return None
    cfg = base or S3Config()
    changes: dict[str, object] = {}
    endpoint = _first(env, ENDPOINT_VARS)
    if endpoint is not None:
        changes["scheme"], changes["endpoint_override"] = _endpoint(*endpoint)
        changes["endpoint"] = None  # radiobject's alias would contradict the new endpoint
    region = _first(env, REGION_VARS)
    if region is not None:
        changes["region"] = region[1]
    style = env.get(ADDRESSING_VAR, "").strip().lower()
    if style:
        if style not in ("path", "virtual"):
            raise S3EnvError(f"{ADDRESSING_VAR}={style!r} must be 'path' or 'virtual'")
        changes["use_virtual_addressing"] = style == "virtual"
    elif endpoint is not None:
        # S3-compatible servers (MinIO, moto, Ceph) on an IP or a single host name serve
        # buckets under the path; virtual hosts would need DNS for <bucket>.<host>
        changes["use_virtual_addressing"] = False
    parallel = _positive_int(env, PARALLEL_OPS_VAR)
    if parallel is not None:
        changes["max_parallel_ops"] = parallel
    part_size = _positive_int(env, PART_SIZE_VAR)
    if part_size is not None:
        changes["multipart_part_size"] = part_size
        changes["multipart_part_size_mb"] = None
    return replace(cfg, **changes)


def apply_s3_env(env: Mapping[str, str] | None = None) -> S3Config | None:
    """Configure this process's S3 settings from the environment (see the module docstring);
    returns the settings applied, or ``None`` (nothing set: settings left as they are)."""
    cfg = s3_config_from_env(env, base=current_settings().s3)
    if cfg is not None and cfg != current_settings().s3:
        configure(s3=cfg)
    return cfg
