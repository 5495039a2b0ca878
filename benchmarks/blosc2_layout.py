"""nnU-Net v2's blosc2 layout, re-implemented from its idea (no nnU-Net code is copied).

nnU-Net v2 (>= 2.6) stores preprocessed cases as ``.b2nd`` (blosc2 N-dimensional arrays) and
sizes the two blosc2 partitions from the training patch size and the CPU caches:

* **blocks** (the unit blosc2 decompresses) should fit the L1 data cache of one core: start
  from the power of two at or below half the patch size on every axis and keep halving the
  axis whose block is largest relative to the patch until the uncompressed block is at most
  80 % of 32 KiB;
* **chunks** (the unit stored and indexed) should fit one core's share of the L3 cache: start
  from one block and keep adding a block along the axis with the fewest blocks so far until
  the uncompressed chunk reaches 80 % of 1.375 MiB (or the whole image);
* codec ZSTD at level 8 with blosc2's default byte shuffle, one thread per reader (nnU-Net
  reads in many worker processes), files opened memory-mapped.

For a 64³ patch of int16 this gives blocks of 32×16×16 (16 KiB) and chunks of about
160×64×64; for uint8 labels 32×32×16 blocks. Reads of a box decompress only the blocks it
touches.
"""

from __future__ import annotations

import math
import os

import numpy as np

from benchmarks.config import PATCH

L1_BYTES = 32 * 1024
L3_BYTES_PER_CORE = 1441792  # 1.375 MiB, nnU-Net's default
SAFETY = 0.8
CLEVEL = 8


def blosc2_partitions(
    image_shape: tuple[int, ...], patch: tuple[int, ...], itemsize: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(blocks, chunks)`` for an array of ``image_shape`` read in patches of ``patch``."""
    shape = np.asarray(image_shape, dtype=np.int64)
    p = np.asarray(patch, dtype=np.int64)
    block = np.array([2 ** max(0, math.floor(math.log2(max(1, v) / 2))) for v in p], dtype=np.int64)
    block = np.minimum(block, shape)
    while block.prod() * itemsize > L1_BYTES * SAFETY:
        ratio = block / p
        # largest block/patch ratio first; on ties the last (fastest-varying) axis first
        candidates = sorted((a for a in range(len(block)) if block[a] > 1), key=lambda a: (-ratio[a], -a))
        if not candidates:
            break
        a = candidates[0]
        block[a] = max(1, 2 ** math.floor(math.log2(block[a] - 1))) if block[a] > 1 else 1
    chunk = block.copy()
    while chunk.prod() * itemsize < L3_BYTES_PER_CORE * SAFETY and (chunk < shape).any():
        growable = [a for a in np.argsort(chunk / block, kind="stable") if chunk[a] < shape[a]]
        a = growable[0]
        chunk[a] = min(chunk[a] + block[a], shape[a])
    return tuple(int(v) for v in block), tuple(int(v) for v in chunk)


def write_b2nd(data: np.ndarray, path: str, patch: tuple[int, ...] = PATCH) -> dict:
    import blosc2

    blocks, chunks = blosc2_partitions(data.shape, patch, data.itemsize)
    if os.path.exists(path):
        os.remove(path)
    cparams = {"codec": blosc2.Codec.ZSTD, "clevel": CLEVEL, "nthreads": 2}
    blosc2.asarray(np.ascontiguousarray(data), urlpath=path, chunks=chunks, blocks=blocks, cparams=cparams, mode="w")
    return {"blocks": list(blocks), "chunks": list(chunks), "codec": "zstd", "clevel": CLEVEL, "shuffle": "byte"}


def open_b2nd(path: str):
    """Open for reading as nnU-Net does: memory-mapped, one decompression thread."""
    import blosc2

    return blosc2.open(path, mode="r", mmap_mode="r", dparams={"nthreads": 1})
