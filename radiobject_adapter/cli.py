"""The ``radiobundles`` command.

Examples::

    radiobundles ingest store -c CT=data/imagesTr -c seg=data/labelsTr --obs-meta data/subjects.csv
    radiobundles ingest store -c CT='data/**/*_0000.nii.gz' --tiling axial
    radiobundles ingest dental_store -c edente=data/edente -c dente=data/dente   # 2D TIF folders
    radiobundles index-foreground store -c seg      # stores written before the index existed
    radiobundles info store

Exit status: 0 when every subject was ingested, 3 when some were rejected (listed, the rest
written), 2 on a usage or input error (nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _collection_spec(text: str) -> tuple[str, str]:
    name, sep, spec = text.partition("=")
    if not sep or not name or not spec:
        raise argparse.ArgumentTypeError(f"expected NAME=FILES (e.g. CT=imagesTr/), got {text!r}")
    return name, spec


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
        help="write NIfTI files or 2D TIF images into a TileDB store (resumable)",
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
        help="collection name and its files: a glob, a folder or a list file",
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
    return parser


def _ingest(args: argparse.Namespace) -> int:
    from radiobject_adapter.store.ingest import IngestError, ingest_niftis
    from radiobject_adapter.store.preflight import check_store_location
    from radiobject_adapter.store.tif import ingest_tifs, is_tif_spec

    check_store_location(args.store)
    collections = dict(args.collections)
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
        )
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
    from radiobject_adapter.store.foreground import index_collection
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``radiobundles`` console script."""
    import tiledb

    from radiobject_adapter.store.ingest import IngestError
    from radiobject_adapter.store.layout import FormatVersionError
    from radiobject_adapter.store.preflight import StoreLocationError, describe_write_error
    from radiobject_adapter.store.radiobject import StoreNotFoundError

    args = _parser().parse_args(argv)
    expected = (IngestError, StoreLocationError, FileNotFoundError, FileExistsError, StoreNotFoundError)
    try:
        if args.command == "ingest":
            return _ingest(args)
        if args.command == "index-foreground":
            return _index(args)
        return _info(args)
    except (*expected, FormatVersionError, KeyError, PermissionError) as err:
        print(f"radiobundles {args.command}: error: {err}", file=sys.stderr)
        return 2
    except tiledb.TileDBError as err:
        line = describe_write_error(args.store, err)
        if line is None:
            raise
        print(f"radiobundles {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
