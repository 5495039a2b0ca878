"""Errors the REST API turns into clear 4xx answers.

MONAI Label's endpoints call the datastore directly, and FastAPI answers any
``HTTPException`` raised there with its status code and ``detail``; anything else becomes
an opaque 500. Each error here is therefore an ``HTTPException`` that also keeps the Python
exception type a caller outside the server would catch (``KeyError``, ``ValueError``...).

Example:
    >>> raise ImageNotFound("unknown image id 'x'; e.g. 'case_000'")   # -> HTTP 404
"""

from __future__ import annotations

from fastapi import HTTPException

from radiobject_adapter.errors import RadiobundlesError

__all__ = [
    "BadLabelUpload",
    "Conflict",
    "ImageNotFound",
    "InvalidRequest",
    "LabelNotFound",
    "NotAllowed",
    "RadiobundlesHTTPError",
    "TrainingFailed",
]


class RadiobundlesHTTPError(HTTPException, RadiobundlesError):
    """Base class: an HTTP status plus a message that says what to do."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=self.status, detail=detail)

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"


class InvalidRequest(RadiobundlesHTTPError, ValueError):
    """A malformed id, tag or parameter (HTTP 400)."""

    status = 400


class ImageNotFound(RadiobundlesHTTPError, KeyError):
    """No image with this id in the datastore (HTTP 404)."""

    status = 404


class LabelNotFound(RadiobundlesHTTPError, KeyError):
    """No label (or label version) for this image and tag (HTTP 404)."""

    status = 404


class BadLabelUpload(RadiobundlesHTTPError, ValueError):
    """An uploaded label that cannot be stored: unreadable, wrong grid or values (HTTP 422)."""

    status = 422


class Conflict(RadiobundlesHTTPError, ValueError):
    """The request clashes with what is stored, e.g. uploading an image id that exists (HTTP 409)."""

    status = 409


class NotAllowed(RadiobundlesHTTPError, PermissionError):
    """An operation this datastore refuses on purpose, e.g. deleting a label (HTTP 405)."""

    status = 405


class TrainingFailed(RadiobundlesHTTPError, RuntimeError):
    """A training run that failed, with its cause in one line (HTTP 500 when run synchronously).

    Raised without the chained traceback (that is logged before): the last line of a failed
    training's output, which MONAI Label keeps in ``/train/`` ``details``, is then the cause.
    """

    status = 500

    def __str__(self) -> str:
        return str(self.detail)
