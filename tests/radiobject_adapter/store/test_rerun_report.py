"""A rerun after a kill says what it repaired: every ingest writer lists the volumes whose
``obs`` row it wrote back from their stored metadata (``IngestReport.repaired``).

The damaged store comes from a real kill: a forked ingest dies by ``SIGKILL`` just before the
first ``obs`` row write that follows the first voxel write (the writer's own log of store
writes, see :func:`~tests.harness.kill.arm_store_kill`). The rerun runs here, in
this process, so that its report can be read.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from radiobject_adapter import RadiObject
from radiobject_adapter.config import reset_caches
from radiobject_adapter.store.check import check_store
from tests.harness.kill import ForkServer, read_op_log

KILL_POINTS_TEST = str(Path(__file__).with_name("test_kill_points.py"))


@pytest.fixture(scope="module")
def cases():
    """The kill-point test module (its writers and synthetic inputs) and a fork server."""
    spec = importlib.util.spec_from_file_location("_kill_points_rerun", KILL_POINTS_TEST)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    preload = ["radiobject_adapter.io.ingest", "radiobject_adapter.io.tif", "radiobject_adapter.io.dicom_ingest"]
    with ForkServer(preload=preload, modules={"t": KILL_POINTS_TEST}) as server:
        yield module, server


def _ingest(writer: str, store: str, inputs: dict):
    """The writer's ingest call, as the kill-point test's workers make it, returning its report."""
    if writer == "nifti_ingest":
        from radiobject_adapter.io.ingest import ingest_niftis

        images = {"CT": inputs["ct"], "seg": inputs["seg"]}
        return ingest_niftis(store, images, obs_meta=inputs["table"], progress=False, tile_extent=8)
    if writer == "tif_ingest":
        from radiobject_adapter.io.tif import ingest_tifs

        return ingest_tifs(store, {"dente": inputs["tif"]}, progress=False)
    from radiobject_adapter.io.dicom_ingest import ingest_dicoms

    return ingest_dicoms(store, {"CT": inputs["dicom"]}, progress=False, tile_extent=8)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("writer", "collection"), [("nifti_ingest", "CT"), ("tif_ingest", "dente"), ("dicom_ingest", "CT")]
)
def test_rerun_after_a_kill_before_the_obs_row_lists_the_repaired_volume(
    cases, tmp_path: Path, writer: str, collection: str
) -> None:
    module, server = cases
    case = module._make_case(writer, tmp_path / "case", server)
    log = tmp_path / "ops.log"

    def spawn(store: Path, kill_at: int | None, op_log: str | None = None) -> int:
        worker = server.spawn(
            "t:run_writer",
            log=str(tmp_path / "w.log"),
            writer=writer,
            store=str(store),
            inputs=case.inputs,
            kill_at=kill_at,
            op_log=op_log,
        )
        return worker.wait(timeout=300)

    assert spawn(tmp_path / "counted", None, str(log)) == 0
    ops = read_op_log(str(log))
    first_voxels = ops.index("dense.write")
    row_write = next(i for i in range(first_voxels, len(ops)) if ops[i] == "sparse.write")
    store = tmp_path / "killed"
    assert spawn(store, row_write + 1) == -9  # killed just before that row write
    reset_caches()
    pending = RadiObject(str(store)).collection(collection).pending
    assert len(pending) == 1, pending  # one volume registered without its row

    report = _ingest(writer, str(store), case.inputs)
    reset_caches()
    assert report.repaired == {collection: pending}
    subject = pending[0].removesuffix(f"_{collection}")
    assert subject not in report.written.get(collection, [])  # its voxels were not written again
    radi = RadiObject(str(store))
    assert radi.collection(collection).pending == []
    assert len(radi.collection(collection).obs) == len(case.contents[collection])
    assert check_store(str(store)).exit_code == 0
