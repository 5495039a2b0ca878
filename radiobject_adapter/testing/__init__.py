"""Local servers and synthetic files for your own tests and demos of radiobundles.

* :mod:`.s3server`: moto's S3 server on 127.0.0.1 in a child process, with a bucket (the ``s3``
  extra): test code that reads or writes ``s3://`` stores without a cloud account;
* :mod:`.orthanc`: Orthanc with DICOMweb on 127.0.0.1 (``make orthanc``, ``make demo-dicom``);
* :mod:`.dicom`: synthetic DICOM CT series written with pydicom (the DICOM demo and benchmark).

The repository's own test harness (a fault-injecting proxy, the kill-point fork server) is
not shipped: it lives in ``tests/harness/``.

Example:
    >>> from radiobject_adapter.testing import s3_server
    >>> with s3_server() as srv:
    ...     print(srv.endpoint_url)
"""

from __future__ import annotations

from radiobject_adapter.testing.s3server import S3Server, S3ServerError, moto_version, s3_server

__all__ = ["S3Server", "S3ServerError", "moto_version", "s3_server"]
