"""Finding input files and deriving subject ids from their names.

The default rule: take the file name, drop the extension (``.nii.gz``, ``.nii``, ``.tif``,
``.tiff``), then drop one trailing nnU-Net channel suffix ``_NNNN``. So
``imagesTr/case_001_0000.nii.gz`` and ``labelsTr/case_001.nii.gz`` both belong to subject
``case_001``. A regular expression overrides the rule: its group named ``subject`` (or its
first group, or the whole match) is the subject id.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CHANNEL_SUFFIX",
    "SUPPORTED_SUFFIXES",
    "discover_files",
    "match_subject",
    "strip_suffix",
    "subject_id_from_path",
]

SUPPORTED_SUFFIXES = (".nii.gz", ".nii", ".tif", ".tiff")
CHANNEL_SUFFIX = re.compile(r"_(\d{4})$")  # nnU-Net's channel: case_001_0000.nii.gz


def strip_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def match_subject(pattern: str, text: str) -> str | None:
    """The subject id ``pattern`` finds in ``text``: its group ``subject``, else its first group,
    else the whole match; ``None`` when it does not match (the caller says where).

    Example:
        >>> match_subject(r"sub-(?P<subject>\\d+)", "sub-07_T1w")
        '07'
    """
    match = re.search(pattern, text)
    if match is None:
        return None
    if "subject" in match.groupdict():
        return match.group("subject")
    return match.group(1) if match.groups() else match.group(0)


def subject_id_from_path(path: str | os.PathLike, pattern: str | None = None, channel_suffix: bool = True) -> str:
    """Subject id of a file by the rule above (``channel_suffix=False``: keep a trailing ``_NNNN``).

    Example:
        >>> subject_id_from_path("imagesTr/case_001_0000.nii.gz")
        'case_001'
        >>> subject_id_from_path("sub-07_T1w.nii.gz", pattern=r"sub-(?P<subject>\\d+)")
        '07'
    """
    stem = strip_suffix(Path(path).name)
    if pattern is None:
        return CHANNEL_SUFFIX.sub("", stem) if channel_suffix else stem
    subject = match_subject(pattern, stem)
    if subject is None:
        raise ValueError(f"subject pattern {pattern!r} does not match file name {stem!r} ({path})")
    return subject


def _is_supported(path: str) -> bool:
    return path.lower().endswith(SUPPORTED_SUFFIXES)


def discover_files(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Files named by a glob, a folder, a list file (one path per line) or a list of paths.

    Raises:
        FileNotFoundError: nothing matched, with the spec in the message.
    """
    if isinstance(spec, (list, tuple)):
        found: list[str] = []
        for item in spec:
            found.extend(discover_files(item))
        return found
    text = os.fspath(spec)
    if any(ch in text for ch in "*?["):
        files = sorted(f for f in glob.glob(text, recursive=True) if os.path.isfile(f))
    elif os.path.isdir(text):
        files = sorted(os.path.join(text, f) for f in os.listdir(text) if _is_supported(f) and not f.startswith("."))
    elif os.path.isfile(text) and text.lower().endswith((".txt", ".lst", ".list")):
        base = os.path.dirname(os.path.abspath(text))
        files = [
            line if os.path.isabs(line) else os.path.join(base, line)
            for line in (raw.strip() for raw in Path(text).read_text().splitlines())
            if line and not line.startswith("#")
        ]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(f"list file {text!r} names {len(missing)} missing file(s): {missing[:5]}")
    elif os.path.isfile(text):
        files = [text]
    else:
        raise FileNotFoundError(f"no such file, folder or glob match: {text!r}")
    if not files:
        raise FileNotFoundError(f"{text!r} matched no image files ({', '.join(SUPPORTED_SUFFIXES)})")
    return files
