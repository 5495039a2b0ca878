"""ONNX Runtime as the CPU runtime of the bundle's network: one sliding-window batch, against torch.

Not part of the pinned environment: ``onnxruntime`` and an ``onnx`` that works with the pinned
numpy 1.26 (``onnx==1.17.0``; newer releases need ``ml_dtypes`` for numpy 2) must be importable,
e.g. installed into a separate folder and put on ``--path``. The network is the bundle's
``network_def`` (``inference.json``, initial weights: the time does not depend on their values),
exported with torch's TorchScript-based exporter (opset 17, dynamic batch), and one batch of
``sw_batch_size`` windows of ``patch_size`` is run by both, single-threaded; wall and CPU seconds
of this process per round, and the largest difference of their outputs.

    pip install --target /tmp/ort --no-deps onnxruntime==1.32.0 onnx==1.17.0
    python -m benchmarks.annotator_onnx --path /tmp/ort --rounds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

__all__ = ["compare_onnx"]


def compare_onnx(bundle: str, rounds: int = 2) -> list[str]:
    """Lines of figures: ONNX Runtime and torch on one batch of windows of ``bundle``'s network."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from monai.bundle import ConfigParser

    torch.set_num_threads(1)
    parser = ConfigParser()
    parser.read_config(os.path.join(bundle, "configs", "inference.json"))
    parser["bundle_root"] = bundle
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    x = torch.rand(parser.get_parsed_content("sw_batch_size"), 1, *parser.get_parsed_content("patch_size"))
    path = os.path.join(tempfile.mkdtemp(prefix="annotator_onnx_"), "net.onnx")
    dynamic = {"x": {0: "batch"}, "y": {0: "batch"}}
    torch.onnx.export(net, (x,), path, dynamo=False, input_names=["x"], output_names=["y"], dynamic_axes=dynamic)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        diff = float(np.abs(session.run(None, {"x": x.numpy()})[0] - net(x).numpy()).max())
    lines = [f"batch {tuple(x.shape)}, onnxruntime {ort.__version__}, largest output difference {diff:.2e}"]
    for rnd in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        session.run(None, {"x": x.numpy()})
        w1, c1 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            net(x)
        w2, c2 = time.perf_counter(), time.process_time()
        lines.append(
            f"round {rnd + 1}: onnxruntime {w1 - w0:.2f} s wall / {c1 - c0:.2f} s CPU, "
            f"torch {w2 - w1:.2f} / {c2 - c1:.2f}"
        )
    load = os.getloadavg()
    lines.append(f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", default=os.path.join("bundles", "ct_segmentation_3d"))
    parser.add_argument("--path", default=None, help="a folder holding onnxruntime and onnx (appended to sys.path)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.path:
        sys.path.append(args.path)
    print("\n".join(compare_onnx(args.bundle, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
