"""Lever experiments on our store: what each tile shape, codec, read call, TileDB setting,
allocator setting, thread and prefetch choice does to a random 64³ int16 patch read (or a
loader batch), measured interleaved in one process on subject 0 of the large set.

Arrays for the tile/codec experiments are written straight with TileDB-Py using the same
schema as ``radiobject_adapter.store.layout.create_volume_schema`` (dims x, y, z int32,
attribute ``voxels``, row-major), only the tile extents and filters change.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks import tuning
from benchmarks.config import MODES, BenchConfig
from benchmarks.synth import DataSet, dir_size
from radiobject_adapter.config import tune_allocator
from radiobject_adapter.store.layout import compression_filters

DEFAULT_CFG = {"sm.compute_concurrency_level": "2", "sm.io_concurrency_level": "2"}  # ReadConfig() before tuning
TUNED_CFG = {"sm.compute_concurrency_level": "1", "sm.io_concurrency_level": "1", **tuning.TUNED_SETTINGS}

MALLOC_DEFAULT = (128 * 1024, 128 * 1024)  # glibc's initial M_MMAP_THRESHOLD / M_TRIM_THRESHOLD
MALLOC_TUNED = (32 << 20, 256 << 20)


def _set_malloc(on: bool) -> None:
    mmap_t, trim_t = MALLOC_TUNED if on else MALLOC_DEFAULT
    tune_allocator(mmap_t, trim_t)


def _make_array(uri: str, data: np.ndarray, tile: tuple[int, int, int], spec: str, level: int) -> int:
    import tiledb

    if not os.path.exists(uri):
        dims = [
            tiledb.Dim(name=n, domain=(0, s - 1), tile=min(t, s), dtype=np.int32)
            for n, s, t in zip("xyz", data.shape, tile)
        ]
        schema = tiledb.ArraySchema(
            domain=tiledb.Domain(*dims),
            attrs=[tiledb.Attr(name="voxels", dtype=data.dtype, filters=compression_filters(spec, level))],
            sparse=False,
            cell_order="row-major",
            tile_order="row-major",
        )
        tmp = uri + ".tmp"
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        tiledb.Array.create(tmp, schema)
        with tiledb.open(tmp, "w") as arr:
            arr[:] = data
        os.replace(tmp, uri)
    return dir_size(uri)


class Bench:
    """Interleaved timing of named read variants on shared random positions."""

    def __init__(self, shape: tuple[int, ...], n: int, seed: int = 5) -> None:
        rng = np.random.default_rng(seed)
        self.starts = [tuple(int(rng.integers(0, s - 64 + 1)) for s in shape) for _ in range(n)]

    def run(self, variants: list[tuple[str, Callable[[tuple[int, ...]], Any], dict]], group: int = 10) -> list[dict]:
        acc: dict[str, list] = {v[0]: [] for v in variants}
        for v in variants:  # warm-up, outside timing
            for s in self.starts[:3]:
                v[1](s)
        rng = np.random.default_rng(11)
        for g in range(0, len(self.starts), group):
            order = list(range(len(variants)))
            rng.shuffle(order)
            for i in order:
                name, fn, meta = variants[i]
                if meta.get("malloc") is not None:
                    _set_malloc(meta["malloc"])
                for s in self.starts[g : g + group]:
                    c0, t0 = time.process_time(), time.perf_counter()
                    fn(s)
                    acc[name].append((time.perf_counter() - t0, time.process_time() - c0))
        rows = []
        for name, _, meta in variants:
            a = np.asarray(acc[name])
            rows.append(
                {
                    "variant": name,
                    "p50_ms": 1e3 * float(np.percentile(a[:, 0], 50)),
                    "p95_ms": 1e3 * float(np.percentile(a[:, 0], 95)),
                    "cpu_mean_ms": 1e3 * float(a[:, 1].mean()),
                    **{k: v for k, v in meta.items() if k in ("bytes", "note")},
                }
            )
        return rows


def run(mode: str, data_root: str, out: str) -> dict[str, Any]:
    import json

    import tiledb
    import tiledb.libtiledb as lt

    cfg: BenchConfig = MODES[mode]
    ds = DataSet(data_root, cfg.dataset("large"))
    n_reads = max(30, cfg.micro_reads // 2)
    lever_dir = ds.path("levers")
    os.makedirs(lever_dir, exist_ok=True)
    import nibabel as nib

    image = np.asanyarray(nib.load(ds.nifti_pairs(True)[0][0]).dataobj)
    shape = image.shape
    bench = Bench(shape, n_reads)
    patch = 64
    experiments: list[dict] = []
    result: dict[str, Any] = {"n_reads": n_reads, "experiments": experiments, "shape": list(shape)}
    _set_malloc(True)
    tuned_ctx = tiledb.Ctx(TUNED_CFG)

    def arr_for(tile, spec, level=3):
        name = f"t{'x'.join(map(str, tile))}_{spec.replace('+', '-')}_{level}"
        uri = os.path.join(lever_dir, name)
        size = _make_array(uri, image, tile, spec, level)
        return uri, size

    def direct(uri, ctx):
        arr = tiledb.open(uri, "r", ctx=ctx)
        rd = tuning.direct_reader(arr)
        return lambda s: rd([(v, v + patch) for v in s])

    def save() -> None:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)

    # 1-3: tile extents and codecs (tuned settings, direct reads, allocator tuned)
    def tile_codec(title: str, combos: list[tuple[tuple[int, int, int], str, int]]) -> None:
        variants = []
        for tile, spec, level in combos:
            uri, size = arr_for(tile, spec, level)
            label = f"{'×'.join(map(str, tile)) if len(set(tile)) > 1 else f'{tile[0]}³'} {spec}{'-' + str(level) if spec in ('zstd', 'byteshuffle+zstd', 'bitshuffle+zstd') else ''}"
            variants.append((label, direct(uri, tuned_ctx), {"bytes": size}))
        experiments.append({"name": title, "variants": bench.run(variants)})
        save()

    axial = (shape[0], shape[1], 1)
    tile_codec(
        "tile extent (zstd-3)",
        [((32,) * 3, "zstd", 3), ((64,) * 3, "zstd", 3), ((96,) * 3, "zstd", 3), (axial, "zstd", 3)],
    )
    tile_codec(
        "codec, 32³ tiles",
        [
            ((32,) * 3, c, lv)
            for c, lv in (
                ("none", 0),
                ("lz4", 1),
                ("zstd", 1),
                ("zstd", 3),
                ("byteshuffle+lz4", 1),
                ("bitshuffle+lz4", 1),
                ("byteshuffle+zstd", 1),
            )
        ],
    )
    tile_codec(
        "codec, 64³ tiles",
        [((64,) * 3, c, lv) for c, lv in (("none", 0), ("lz4", 1), ("zstd", 1), ("zstd", 3), ("byteshuffle+lz4", 1))],
    )
    tile_codec(
        "tile extent (byteshuffle+lz4)",
        [
            ((16,) * 3, "byteshuffle+lz4", 1),
            ((32,) * 3, "byteshuffle+lz4", 1),
            ((32, 32, 64), "byteshuffle+lz4", 1),
            ((32, 32, shape[2]), "byteshuffle+lz4", 1),
            ((64,) * 3, "byteshuffle+lz4", 1),
        ],
    )
    # the uint8 label: shuffling 1-byte values is a no-op that still costs a filter stage
    label = np.asanyarray(nib.load(ds.nifti_pairs(True)[0][1]).dataobj)
    lvariants = []
    for tile, spec, level in (
        ((32,) * 3, "byteshuffle+lz4", 1),
        ((32,) * 3, "lz4", 1),
        ((32,) * 3, "zstd", 1),
        ((64,) * 3, "lz4", 1),
    ):
        uri = os.path.join(lever_dir, f"label_t{tile[0]}_{spec.replace('+', '-')}_{level}")
        size = _make_array(uri, label, tile, spec, level)
        lvariants.append((f"uint8 label {tile[0]}³ {spec}", direct(uri, tuned_ctx), {"bytes": size}))
    experiments.append({"name": "label codec (uint8, 64³ read)", "variants": bench.run(lvariants)})
    save()

    # 4: read calls on the default (32³ byteshuffle+lz4) store
    uri32, _ = arr_for((32,) * 3, "byteshuffle+lz4", 1)
    arr = tiledb.open(uri32, "r", ctx=tuned_ctx)
    q = arr.query(attrs=("voxels",))
    sl = lambda s: tuple(slice(v, v + patch) for v in s)  # noqa: E731
    reused_note = ""
    try:
        lctx = lt.Context(tuned_ctx)
        pre = lt.Query(lctx, arr.array, lt.QueryType.READ)
        pre.layout = lt.LayoutType.ROW_MAJOR
        buf = np.empty((patch,) * 3, np.int16)
        for k in range(2):
            sub = lt.Subarray(lctx, arr.array)
            for i, v in enumerate(bench.starts[k]):
                sub._add_dim_range(i, (v, v + patch - 1))
            pre.set_subarray(sub)
            pre.set_data_buffer("voxels", buf, buf.size)
            pre._submit()
        reused_note = "works"
    except Exception as err:
        reused_note = f"not possible: {err}"

    def aligned(s):
        lo = [v // 32 * 32 for v in s]
        hi = [min(n, -(-(v + patch) // 32) * 32) for v, n in zip(s, shape)]
        big = tuning.direct_reader(arr)(list(zip(lo, hi)))
        return np.ascontiguousarray(big[tuple(slice(v - a, v - a + patch) for v, a in zip(s, lo))])

    def reopen(s):
        with tiledb.open(uri32, "r", ctx=tuned_ctx) as a:
            return tuning.direct_reader(a)([(v, v + patch) for v in s])

    variants = [
        ("arr.query(attrs=...)[...] (TileDB-Py, Volume.read_box before tuning)", lambda s: q[sl(s)]["voxels"], {}),
        ("arr[...]", lambda s: arr[sl(s)]["voxels"], {}),
        ("arr.multi_index[...]", lambda s: arr.multi_index[tuple(slice(v, v + patch - 1) for v in s)]["voxels"], {}),
        ("libtiledb Query into preallocated buffer (default)", direct(uri32, tuned_ctx), {}),
        ("same, array re-opened per read (radiobject's way)", reopen, {}),
        ("tile-aligned superset read, then crop", aligned, {}),
    ]
    rows = bench.run(variants)
    rows.append({"variant": "one libtiledb Query reused for every read", "note": reused_note})
    experiments.append({"name": "read call (32³ byteshuffle+lz4)", "variants": rows})
    save()

    # 5-6: TileDB settings and allocator
    def settings_exp(title: str, uri: str) -> None:
        combos = [
            ("ReadConfig() today: concurrency 2, library defaults", DEFAULT_CFG, False),
            ("+ sm.mem.malloc_trim=false", {**DEFAULT_CFG, "sm.mem.malloc_trim": "false"}, False),
            (
                "+ read batching off (vfs.min_batch_size=0, min_batch_gap=0)",
                {**DEFAULT_CFG, "vfs.min_batch_gap": "0", "vfs.min_batch_size": "0"},
                False,
            ),
            ("+ vfs.min_batch_gap=0 only", {**DEFAULT_CFG, "vfs.min_batch_gap": "0"}, False),
            ("+ concurrency 1", {"sm.compute_concurrency_level": "1", "sm.io_concurrency_level": "1"}, False),
            ("all three (tuned TileDB settings, default)", TUNED_CFG, False),
            ("tuned settings but concurrency 2", {**TUNED_CFG, **DEFAULT_CFG}, False),
        ]
        # the allocator stays tuned here (its effect only shows in fresh processes: see below)
        variants = [(name, direct(uri, tiledb.Ctx(c)), {}) for name, c, _ in combos]
        experiments.append({"name": title, "variants": bench.run(variants)})
        save()

    settings_exp("TileDB settings (32³ byteshuffle+lz4, direct reads)", uri32)
    uri64, _ = arr_for((64,) * 3, "zstd", 3)
    settings_exp("TileDB settings (64³ zstd-3 = store before tuning, direct reads)", uri64)

    # 7: full volume and axial slice under the tuned settings (does batch gap 0 hurt big reads?)
    def full_slice_exp() -> None:
        rows = []
        for title, uri_ in (("32³ byteshuffle+lz4", uri32), ("axial zstd-3", arr_for(axial, "zstd", 3)[0])):
            for cname, c in (("defaults", DEFAULT_CFG), ("tuned", TUNED_CFG)):
                a = tiledb.open(uri_, "r", ctx=tiledb.Ctx(c))
                rd = tuning.direct_reader(a)
                t_full, t_ax = [], []
                for _ in range(max(2, cfg.micro_slow_reads)):
                    t0 = time.perf_counter()
                    rd([(0, shape[0]), (0, shape[1]), (0, shape[2])])
                    t_full.append(time.perf_counter() - t0)
                for k in range(20):
                    z = (k * 37) % shape[2]
                    t0 = time.perf_counter()
                    rd([(0, shape[0]), (0, shape[1]), (z, z + 1)])
                    t_ax.append(time.perf_counter() - t0)
                rows.append({"variant": f"{title}, {cname}: full volume", "p50_ms": 1e3 * float(np.median(t_full))})
                rows.append({"variant": f"{title}, {cname}: axial slice", "p50_ms": 1e3 * float(np.median(t_ax))})
                a.close()
        experiments.append({"name": "full volume / axial slice", "variants": rows})
        save()

    full_slice_exp()
    experiments.append(allocator_experiment(lever_dir, n_reads))
    save()

    # 8-9: threads inside a worker and prefetch, on the ours-iso store (defaults) through radiobject_adapter
    store = ds.path("store_ours-iso")
    if os.path.exists(store):
        from concurrent.futures import ThreadPoolExecutor

        from radiobject_adapter import DatasetConfig, RadiObject, SegmentationDataset, create_segmentation_dataloader

        radi = RadiObject(store)
        img_v, lbl_v = radi.CT[ds.ids[0]], radi.seg[ds.ids[0]]
        pool = ThreadPoolExecutor(2)

        def seq(s):
            b = [(v, v + patch) for v in s]
            return img_v.read_box(b), lbl_v.read_box(b)

        def par(s):
            b = [(v, v + patch) for v in s]
            f = pool.submit(lbl_v.read_box, b)
            return img_v.read_box(b), f.result()

        dsx = SegmentationDataset(radi.CT, radi.seg, DatasetConfig(loading_mode="patch", patch_size=(64, 64, 64)))
        k = [0]

        def item(_s):
            k[0] += 1
            return dsx[k[0] % len(dsx)]

        rows = bench.run(
            [
                ("image + label read one after the other", seq, {}),
                ("image + label read in 2 threads", par, {}),
                ("whole dataset item (reads + float32 + MetaTensor)", item, {}),
            ]
        )
        experiments.append({"name": "per sample: threads inside a worker (ours-iso store)", "variants": rows})
        save()

        def loader_rate(prefetch: int, workers: int, n_batches: int, threads: int = 1) -> float:
            loader = create_segmentation_dataloader(
                radi.CT,
                radi.seg,
                batch_size=4,
                patch_size=(64, 64, 64),
                num_workers=workers,
                pin_memory=False,
                persistent_workers=workers > 0,
                patches_per_volume=256,
                read_threads=threads,
            )
            it = iter(_Prefetch(loader, prefetch) if prefetch else loader)
            for _ in range(3):
                next(it)
            t0 = time.perf_counter()
            for _ in range(n_batches):
                next(it)
            return n_batches * 4 / (time.perf_counter() - t0)

        nb = max(10, n_reads // 4)
        rows = []
        for _ in range(2):
            for name, pf, w, th in (
                ("factory loader, 1 read thread, 0 workers", 0, 0, 1),
                ("+ prefetch thread (4 batches), 0 workers", 4, 0, 1),
                ("+ 2 read threads per process (default), 0 workers", 0, 0, 2),
                ("+ 4 read threads per process, 0 workers", 0, 0, 4),
                ("factory loader, 1 read thread, 2 workers", 0, 2, 1),
                ("+ prefetch thread (4 batches), 2 workers", 4, 2, 1),
                ("+ 2 read threads per process (default), 2 workers", 0, 2, 2),
            ):
                rows.append((name, loader_rate(pf, w, nb, th)))
        merged = {}
        for name, v in rows:
            merged.setdefault(name, []).append(v)
        experiments.append(
            {
                "name": "threads and prefetch (ours-iso store, samples/s, 2 alternating runs)",
                "variants": [
                    {"variant": n, "note": f"{np.median(v):.1f} samples/s ({', '.join(f'{x:.0f}' for x in v)})"}
                    for n, v in merged.items()
                ],
            }
        )
        save()
    return result


def _alloc_child(uri: str, mallopt: bool, n: int, seed: int) -> dict[str, float]:
    """In a fresh process: ``n`` random 64³ reads with the tuned TileDB settings, with or
    without the allocator setting (which only shows in a process that never had it)."""
    import tiledb

    if mallopt:
        tune_allocator()
    arr = tiledb.open(uri, "r", ctx=tiledb.Ctx(TUNED_CFG))
    rd = tuning.direct_reader(arr)
    bench = Bench(tuple(int(arr.schema.domain.dim(i).domain[1]) + 1 for i in range(3)), n, seed=seed)
    for s in bench.starts[:5]:
        rd([(v, v + 64) for v in s])
    walls, cpus = [], []
    for s in bench.starts:
        c0, t0 = time.process_time(), time.perf_counter()
        rd([(v, v + 64) for v in s])
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"p50_ms": 1e3 * float(np.median(walls)), "cpu_mean_ms": 1e3 * float(np.mean(cpus))}


def allocator_experiment(lever_dir: str, n: int, rounds: int = 3) -> dict[str, Any]:
    """mallopt on/off, each in fresh processes, alternating ``rounds`` times."""
    import json
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for label, tile, spec, level in (("32³ byteshuffle+lz4", 32, "byteshuffle-lz4", 1), ("64³ zstd-3", 64, "zstd", 3)):
        uri = os.path.join(lever_dir, f"t{tile}x{tile}x{tile}_{spec}_{level}")
        if not os.path.exists(uri):
            continue
        got: dict[bool, list] = {False: [], True: []}
        for r in range(rounds):
            for on in (False, True):
                code = f"import json; from benchmarks.levers import _alloc_child; print(json.dumps(_alloc_child({uri!r}, {on}, {n}, {r})))"
                out = subprocess.run(
                    [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=300
                )
                if out.returncode == 0:
                    got[on].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for on in (False, True):
            if got[on]:
                rows.append(
                    {
                        "variant": f"{label}, tuned settings, {'with' if on else 'without'} mallopt (fresh processes)",
                        "p50_ms": float(np.median([g["p50_ms"] for g in got[on]])),
                        "cpu_mean_ms": float(np.median([g["cpu_mean_ms"] for g in got[on]])),
                        "note": f"{len(got[on])} processes × {n} reads, alternating",
                    }
                )
    return {"name": "allocator (glibc mallopt), fresh processes", "variants": rows}


class _Prefetch:
    """Iterate ``loader`` in a background thread, ``depth`` batches ahead."""

    def __init__(self, loader: Any, depth: int) -> None:
        self.loader, self.depth = loader, depth

    def __iter__(self):
        import queue
        import threading

        q: queue.Queue = queue.Queue(self.depth)
        done = object()

        def fill() -> None:
            while True:
                for b in self.loader:
                    q.put(b)

        threading.Thread(target=fill, daemon=True).start()
        while True:
            b = q.get()
            if b is done:
                return
            yield b


def run_all(cfg: BenchConfig, data_root: str, work: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the levers in a fresh process (their allocator and patches stay there)."""
    import json
    import subprocess
    import sys

    out = os.path.join(work, "levers.json")
    if os.path.exists(out):
        os.remove(out)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(work, "levers.log"), "a") as lf:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.worker",
                "levers",
                "--mode",
                cfg.mode,
                "--data",
                data_root,
                "--out",
                out,
            ],
            cwd=repo,
            stdout=lf,
            stderr=subprocess.STDOUT,
            timeout=max(600.0, cfg.contender_timeout_s * 2),
        )
    res: dict[str, Any] = {}
    if os.path.exists(out):
        with open(out) as f:
            res = json.load(f)
    if proc.returncode != 0:
        res["error"] = f"levers exited with code {proc.returncode} (see {work}/levers.log)"
    for exp in res.get("experiments", []):
        log(f"  {exp['name']}")
        for v in exp["variants"]:
            p50 = f"{v['p50_ms']:.2f} ms" if "p50_ms" in v else ""
            log(f"    {v['variant']:55s} {p50} {v.get('note', '')}")
    return res
