"""Test helpers shipped with radiobject_adapter (optional ``s3`` extra for the S3 server).

Example:
    >>> from radiobject_adapter.testing import s3_server
    >>> with s3_server() as srv:
    ...     print(srv.endpoint_url)
"""

from __future__ import annotations

from radiobject_adapter.testing.s3server import S3Server, S3ServerError, moto_version, s3_server

__all__ = ["S3Server", "S3ServerError", "moto_version", "s3_server"]
