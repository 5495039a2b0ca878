"""``FittedWindowInferer``: the inference window shrinks to a small volume and tiles a large one."""

from __future__ import annotations

import threading

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from bundles.ct_segmentation_3d.scripts.inferers import FittedWindowInferer


class _Recorder(torch.nn.Module):
    """Answers each window with its input (so stitching is checked) and records the window shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape[2:]))
        return x * 2


def test_a_small_volume_is_one_window_of_its_size_rounded_up_to_the_network_stride():
    net = _Recorder()
    x = torch.rand(1, 1, 96, 90, 61)
    out = FittedWindowInferer([128, 128, 160], sw_batch_size=1, overlap=0.0)(x, net)
    assert net.shapes == [(96, 96, 64)]  # not MONAI's pad-to-roi (128, 128, 160)
    assert out.shape == x.shape and torch.allclose(out, x * 2)


def test_a_large_volume_is_tiled_by_the_largest_window_like_monai_does():
    x = torch.rand(1, 1, 256, 256, 160)
    ours, monai = _Recorder(), _Recorder()
    out = FittedWindowInferer([128, 128, 160], sw_batch_size=1, overlap=0.0)(x, ours)
    ref = SlidingWindowInferer([128, 128, 160], sw_batch_size=1, overlap=0.0)(x, monai)
    assert ours.shapes == monai.shapes == [(128, 128, 160)] * 4
    assert torch.equal(out, ref) and torch.allclose(out, x * 2)


def test_windows_stay_multiples_of_the_stride_on_every_axis():
    inferer = FittedWindowInferer([128, 128, 160], overlap=0.0)
    assert inferer.window_for((1, 17, 300)) == (16, 32, 160)
    with pytest.raises(ValueError, match="multiple of 16"):
        FittedWindowInferer([100, 128, 160])


def test_concurrent_calls_on_one_inferer_keep_their_own_window():
    # MONAI Label may run two /infer requests through one task's inferer at the same time
    inferer = FittedWindowInferer([64, 64, 64], sw_batch_size=1, overlap=0.0)
    sizes = {"small": (16, 16, 16), "large": (64, 64, 48)}
    seen: dict[str, set[tuple[int, ...]]] = {}

    def run(name: str) -> None:
        net = _Recorder()
        for _ in range(20):
            inferer(torch.rand(1, 1, *sizes[name]), net)
        seen[name] = set(net.shapes)

    threads = [threading.Thread(target=run, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"small": {(16, 16, 16)}, "large": {(64, 64, 48)}}
    assert tuple(inferer.roi_size) == (64, 64, 64)  # the shared inferer itself is never changed
