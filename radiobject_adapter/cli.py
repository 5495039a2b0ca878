"""The ``radiobundles`` command.

Examples::

    radiobundles ingest store -c CT=data/imagesTr -c seg=data/labelsTr --obs-meta data/subjects.csv
    radiobundles ingest store -c CT='data/**/*_0000.nii.gz' --tiling axial
    radiobundles ingest dental_store -c edente=data/edente -c dente=data/dente   # 2D TIF folders
    radiobundles ingest store -c CT=dicom/ --dicom-rules configs/dicom_rules.json   # DICOM series
    radiobundles ingest store -c CT --dicomweb http://127.0.0.1:8042/dicom-web --query Modality=CT
    radiobundles index-foreground store -c seg      # stores written before the index existed
    radiobundles info store
    radiobundles check store [--repair]            # invariants after a crash; repair from stored data
    radiobundles consolidate store                 # merge many small fragments (never label versions)

Exit status: 0 when every subject was ingested, 3 when some were rejected (listed, the rest
written), 2 on a usage or input error (nothing written). ``check``: 0 clean, 1 problems
found and all repaired, 2 problems remain (damage, or repairable ones without --repair).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported on use: the CLI starts without pandas/tiledb
    from radiobject_adapter.io.ingest import IngestReport

__all__ = ["main"]


def _collection_spec(text: str) -> tuple[str, str]:
    name, sep, spec = text.partition("=")
    if not name or (sep and not spec):
        raise argparse.ArgumentTypeError(f"expected NAME=FILES (e.g. CT=imagesTr/), got {text!r}")
    return name, spec  # NAME alone (no files): series pulled with --dicomweb


def _query(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected TAG=VALUE (e.g. Modality=CT), got {text!r}")
    return key, value


def _tile_extent(text: str) -> int | tuple[int, int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",") if p]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 3:
        return (parts[0], parts[1], parts[2])
    raise argparse.ArgumentTypeError(f"tile extent is one int or three (64 or 64,64,32), got {text!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiobundles", description=__doc__.split("\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)

    ing = sub.add_parser(
        "ingest",
        help="write NIfTI files, 2D TIF images or DICOM series into a TileDB store (resumable)",
        description=(
            "Write NIfTI files into a store, one collection per -c. Subject ids come from file "
            "names: extension and one trailing _NNNN channel suffix removed "
            "(imagesTr/case_001_0000.nii.gz and labelsTr/case_001.nii.gz -> case_001), "
            "unless --subject-pattern is given. Re-running completes an interrupted ingest. "
            "Collections of .tif/.tiff files are ingested as 2D images, (H, W, 1) volumes with "
            "identity affine, the subject id being the file name without extension "
            "(img_0001.tif -> img_0001)."
        ),
    )
    ing.add_argument("store", help="store URI (local folder or s3://bucket/path)")
    ing.add_argument(
        "-c",
        "--collection",
        dest="collections",
        action="append",
        type=_collection_spec,
        required=True,
        metavar="NAME=FILES",
        help="collection name and its files: a glob, a folder or a list file (with --dicomweb: NAME alone)",
    )
    ing.add_argument("--obs-meta", help="CSV subject table joined on subject id (e.g. diagnosis, age)")
    ing.add_argument("--subject-column", help="subject id column of --obs-meta (default: auto)")
    ing.add_argument("--subject-pattern", help="regex for the subject id; group 'subject' or group 1")
    ing.add_argument(
        "--label-collections",
        nargs="*",
        default=None,
        help="collections that hold labels (default: those named seg/label/labels/mask/masks)",
    )
    ing.add_argument(
        "--tiling",
        choices=["isotropic", "axial", "sagittal", "coronal"],
        default=None,
        help="tile shape (default: isotropic for NIfTI, axial = one tile per image for TIF)",
    )
    ing.add_argument("--tile-extent", type=_tile_extent, default=None, help="isotropic tile size (default 32)")
    ing.add_argument(
        "--compression",
        default=None,
        help="zstd, lz4, gzip or none, optionally after byteshuffle+ / bitshuffle+ / delta+ (default byteshuffle+lz4)",
    )
    ing.add_argument("--compression-level", type=int, default=None, help="codec level (default 3; lz4 ignores it)")
    ing.add_argument("--affine-atol", type=float, default=1e-3, help="allowed image/label affine difference")
    ing.add_argument("--nonfinite", choices=["reject", "report"], default="reject", help="images with NaN/Inf voxels")
    ing.add_argument("--max-label", type=int, default=None, help="highest class index a label may hold")
    ing.add_argument(
        "--label-classes",
        default=None,
        metavar="NAMES",
        help="class names by class value, background first (background,liver,tumour): recorded in the store, "
        "where bundles take their class_names from; labels with other classes are rejected",
    )
    ing.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    par = ing.add_argument_group("parallel (NIfTI)", "several writers into one store, each under its own writer lease")
    par.add_argument("--workers", type=int, default=1, metavar="N", help="subjects ingested at once, in N processes")
    par.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="one Ray task per subject on this cluster ('auto', ray://host:10001, or 'local': "
        "a local Ray with --workers CPUs); needs pip install 'radiobundles[distributed]'",
    )
    dcm = ing.add_argument_group("DICOM", "folders of DICOM files are detected; one volume per series")
    dcm.add_argument("--dicom-rules", help="JSON rules picking series per collection (e.g. configs/dicom_rules.json)")
    dcm.add_argument("--subject-tag", default="PatientID", help="DICOM tag giving the subject id (default PatientID)")
    dcm.add_argument(
        "--no-identifying-tags", action="store_true", help="leave tags that identify a person (dates) out of obs"
    )
    web = ing.add_argument_group("DICOMweb", "pull series from a DICOMweb server (resumable), then ingest them")
    web.add_argument("--dicomweb", metavar="URL", help="server base URL, e.g. http://127.0.0.1:8042/dicom-web")
    web.add_argument("--study", action="append", default=[], metavar="UID", help="StudyInstanceUID to pull")
    web.add_argument("--series", action="append", default=[], metavar="UID", help="SeriesInstanceUID to pull")
    web.add_argument(
        "--query", action="append", default=[], type=_query, metavar="TAG=VALUE", help="QIDO filter, e.g. Modality=CT"
    )
    web.add_argument(
        "--download-dir", help="where pulled DICOM files are kept (default <store>_dicom; SEG output reads them)"
    )

    idx = sub.add_parser(
        "index-foreground",
        help="build the foreground index of label collections (stores made before it existed)",
    )
    idx.add_argument("store")
    idx.add_argument("-c", "--collection", dest="collections", action="append", required=True, help="label collection")
    idx.add_argument("--no-progress", action="store_true")

    info = sub.add_parser("info", help="describe a store (collections, subjects, volumes)")
    info.add_argument("store")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    chk = sub.add_parser(
        "check",
        help="verify a store's invariants (after a crash or kill); --repair fixes what stored data allows",
        description=(
            "Checks format version, volume <-> obs row agreement, unregistered or half-written folders "
            "left by killed writers, counters, the subject table, foreground indexes against the newest "
            "label fragment, and whether radiobject 0.1.1 reads the right volume per position. "
            "--repair re-derives missing rows from the volumes' metadata, registers complete volumes, "
            "removes dead writers' half-written folders (never while another writer is alive), rebuilds "
            "stale indexes and counters; it never deletes a volume or a label version. "
            "Exit status: 0 clean, 1 repaired, 2 problems remain."
        ),
    )
    chk.add_argument("store")
    chk.add_argument("--repair", action="store_true", help="fix what can be fixed from stored data")

    con = sub.add_parser(
        "consolidate",
        help="merge the many small TileDB files of obs tables and groups (label versions are kept)",
    )
    con.add_argument("store")
    con.add_argument("--no-progress", action="store_true")
    return parser


def _ingest(args: argparse.Namespace) -> int:
    from radiobject_adapter.io.ingest import IngestError, ingest_niftis
    from radiobject_adapter.io.tif import ingest_tifs, is_tif_spec
    from radiobject_adapter.store.preflight import check_store_location

    check_store_location(args.store)
    collections = dict(args.collections)
    if args.workers != 1 or args.ray:
        from radiobject_adapter.io.dicom_ingest import is_dicom_spec

        if args.dicomweb or any(spec and (is_tif_spec(spec) or is_dicom_spec(spec)) for spec in collections.values()):
            raise IngestError("--workers and --ray ingest NIfTI files; run DICOM and TIF ingests without them")
    report = _ingest_dicom(args, collections)
    if report is not None:
        return _finish_ingest(report)
    tif = sorted(name for name, spec in collections.items() if is_tif_spec(spec))
    if tif and len(tif) < len(collections):
        raise IngestError(
            f"collections {tif} hold TIF images and {sorted(set(collections) - set(tif))} do not; "
            "ingest TIF and NIfTI collections with separate commands"
        )
    if tif:
        report = ingest_tifs(
            args.store,
            collections,
            obs_meta=args.obs_meta,
            subject_column=args.subject_column,
            subject_pattern=args.subject_pattern,
            tiling=args.tiling or "axial",
            compression=args.compression,
            compression_level=args.compression_level,
            progress=not args.no_progress,
        )
    else:
        report = ingest_niftis(
            args.store,
            collections,
            obs_meta=args.obs_meta,
            subject_column=args.subject_column,
            subject_pattern=args.subject_pattern,
            label_collections=args.label_collections,
            tiling=args.tiling or "isotropic",
            tile_extent=args.tile_extent,
            compression=args.compression,
            compression_level=args.compression_level,
            affine_atol=args.affine_atol,
            nonfinite=args.nonfinite,
            max_label=args.max_label,
            label_classes=args.label_classes,
            progress=not args.no_progress,
            workers=args.workers,
            ray_address=args.ray,
        )
    return _finish_ingest(report)


def _ingest_dicom(args: argparse.Namespace, collections: dict[str, str]) -> IngestReport | None:
    """DICOM ingest when the collections are DICOM folders; ``None`` when they are not."""
    from radiobject_adapter.io.dicom_ingest import ingest_dicoms, is_dicom_spec
    from radiobject_adapter.io.ingest import IngestError

    if args.dicomweb:
        collections = _pull(args, collections)
    elif any(not spec for spec in collections.values()):
        raise IngestError("give each collection its files (NAME=FILES); NAME alone only goes with --dicomweb")
    dicom = sorted(name for name, spec in collections.items() if is_dicom_spec(spec))
    if not dicom:
        return None
    if len(dicom) < len(collections):
        raise IngestError(
            f"collections {dicom} hold DICOM files and {sorted(set(collections) - set(dicom))} do not; "
            "ingest DICOM and NIfTI/TIF collections with separate commands"
        )
    return ingest_dicoms(
        args.store,
        collections,
        rules=args.dicom_rules,
        subject_tag=args.subject_tag,
        subject_pattern=args.subject_pattern,
        identifying_tags=not args.no_identifying_tags,
        obs_meta=args.obs_meta,
        subject_column=args.subject_column,
        tiling=args.tiling or "isotropic",
        tile_extent=args.tile_extent,
        compression=args.compression,
        compression_level=args.compression_level,
        progress=not args.no_progress,
    )


def _pull(args: argparse.Namespace, collections: dict[str, str]) -> dict[str, str]:
    """Download the chosen series (resumable); every collection then reads the download folder."""
    from radiobject_adapter.io.dicomweb import pull_series
    from radiobject_adapter.io.ingest import IngestError

    if "://" in args.store and not args.download_dir:
        raise IngestError("the store is remote: give --download-dir for the pulled DICOM files")
    folder = args.download_dir or f"{args.store.rstrip('/')}_dicom"
    from requests.exceptions import RequestException

    try:
        pull_series(args.dicomweb, folder, args.study, args.series, dict(args.query), progress=not args.no_progress)
    except ValueError as err:
        raise IngestError(str(err)) from err
    except RequestException as err:
        raise IngestError(f"DICOMweb server {args.dicomweb} failed: {err}; is it running (make orthanc)?") from err
    return {name: spec or folder for name, spec in collections.items()}


def _finish_ingest(report: IngestReport) -> int:
    print(report.summary())
    if report.failures:
        print(
            f"{len(report.failures)} subject(s) rejected and not written; fix the files named above "
            "and run the same command again (already ingested subjects are skipped).",
            file=sys.stderr,
        )
        return 3
    return 0


def _index(args: argparse.Namespace) -> int:
    from radiobject_adapter.store.labels import index_collection
    from radiobject_adapter.store.radiobject import RadiObject

    radi = RadiObject(args.store)
    for name in args.collections:
        n = index_collection(radi.collection(name), progress=not args.no_progress)
        print(f"{name}: indexed {n} volume(s); {len(radi.collection(name)) - n} already had an index")
    return 0


def _info(args: argparse.Namespace) -> int:
    from radiobject_adapter.store.label_classes import declared_label_classes
    from radiobject_adapter.store.radiobject import RadiObject

    radi = RadiObject(args.store)
    out = {
        "uri": radi.uri,
        "format_version": radi.format_version,
        "subjects": len(radi),
        "subject_table_columns": [c for c in radi.obs_meta.columns if c not in ("obs_subject_id", "obs_id")],
        "collections": {},
    }
    for name in radi.collection_names:
        col = radi.collection(name)
        shapes = sorted({tuple(v.shape) for v in col})
        dtypes = sorted({str(v.dtype) for v in col})
        out["collections"][name] = {
            "volumes": len(col),
            "shapes": [list(s) for s in shapes],
            "dtypes": dtypes,
        }
        declared = declared_label_classes(col)
        if declared is not None:
            out["collections"][name]["label_classes"] = declared
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        n = out["subjects"]
        print(f"{out['uri']} (format {out['format_version']}): {n} subject{'' if n == 1 else 's'}")
        print(f"  subject table columns: {out['subject_table_columns']}")
        for name, c in out["collections"].items():
            classes = f", label classes {c['label_classes']}" if "label_classes" in c else ""
            print(
                f"  {name}: {c['volumes']} volumes, dtypes {c['dtypes']}, {len(c['shapes'])} distinct shapes{classes}"
            )
    return 0


def _check(args: argparse.Namespace) -> int:
    from radiobject_adapter.store.check import check_store

    report = check_store(args.store, repair=args.repair)
    print(report.summary())
    return report.exit_code


def _consolidate(args: argparse.Namespace) -> int:
    from radiobject_adapter.store.consolidate import consolidate_store

    try:
        report = consolidate_store(args.store, progress=not args.no_progress)
    except RuntimeError as err:  # another writer is active
        print(f"radiobundles consolidate: error: {err}", file=sys.stderr)
        return 2
    print(
        f"{report.uri}: consolidated {len(report.arrays)} tables, {len(report.groups)} groups' metadata, "
        f"fragment metadata of {len(report.volumes)} multi-version volumes (their versions kept)"
    )
    return 0


def _input_errors() -> tuple[type[Exception], ...]:
    """Errors that mean bad input (exit 2). Imported only when an exception propagates (an
    ``except`` clause evaluates its tuple then), so ``--help`` and ``info`` skip the ingest stack."""
    from radiobject_adapter.io.ingest import IngestError
    from radiobject_adapter.store.layout import FormatVersionError
    from radiobject_adapter.store.preflight import StoreLocationError
    from radiobject_adapter.store.radiobject import StoreNotFoundError

    return (
        IngestError,
        StoreLocationError,
        FileNotFoundError,
        FileExistsError,
        StoreNotFoundError,
        FormatVersionError,
        KeyError,
        PermissionError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radiobundles`` console script."""
    import tiledb

    args = _parser().parse_args(argv)
    try:
        if args.command == "ingest":
            return _ingest(args)
        if args.command == "index-foreground":
            return _index(args)
        if args.command == "check":
            return _check(args)
        if args.command == "consolidate":
            return _consolidate(args)
        return _info(args)
    except _input_errors() as err:
        print(f"radiobundles {args.command}: error: {err}", file=sys.stderr)
        return 2
    except tiledb.TileDBError as err:
        from radiobject_adapter.store.preflight import describe_write_error

        line = describe_write_error(args.store, err)
        if line is None:
            raise
        print(f"radiobundles {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
