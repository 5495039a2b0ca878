"""``obs_row``: the one builder of a collection's per-volume row, equal to the rows writers built by hand."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from radiobject_adapter.store.layout import affine_to_json, obs_row


def test_obs_row_equals_the_rows_label_and_prediction_writers_built():
    affine = np.array([[-0.7, 0, 0, 10], [0, 0.9, 0.1, -4], [0, 0, 2.5, 3], [0, 0, 0, 1]], dtype=np.float64)
    data = np.zeros((12, 10, 6), np.uint8)
    by_hand = {  # what store_output.write_prediction and store_access._create wrote before
        "series_type": "pred",
        "voxel_spacing": str(tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))),
        "dimensions": str(data.shape),
        "axcodes": "".join(nib.aff2axcodes(affine)),
        "affine_json": affine_to_json(affine),
        "source_path": "/data/store::CT/case_001",
    }
    assert obs_row("pred", data.shape, affine, "/data/store::CT/case_001") == by_hand


def test_obs_row_for_a_tif_and_for_a_copied_volume():
    tif = obs_row("dente", (32, 24, 1), np.eye(4), "/d/img.tif", spatial_units="unknown", orientation_source="identity")
    assert tif == {  # the TIF ingest's row before
        "series_type": "dente",
        "voxel_spacing": str((1.0, 1.0, 1.0)),
        "dimensions": str((32, 24, 1)),
        "spatial_units": "unknown",
        "axcodes": "RAS",
        "affine_json": affine_to_json(np.eye(4)),
        "orientation_source": "identity",
        "source_path": "/d/img.tif",
    }
    assert obs_row("CT", (8, 8, 4, 2)) == {"series_type": "CT", "dimensions": "(8, 8, 4)"}
