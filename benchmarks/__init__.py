"""Loader-throughput benchmarks: our TileDB store against MONAI, TorchIO, radiobject 0.1.1,
memory-mapped ``.npy`` and nnU-Net's blosc2 layout. Entry point: ``python -m benchmarks.run``."""
