"""Adding columns (e.g. predictions) to a store's subject table without changing anything else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radiobject_adapter import RadiObject, ingest_niftis
from radiobject_adapter.store.subject_table import write_subject_columns
from radiobject_adapter.synthetic import make_ct_dataset


@pytest.fixture
def small_store(tmp_path) -> str:
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=4, shape_range=((16, 16), (16, 16), (8, 8)), seed=3)
    uri = str(tmp_path / "store")
    assert ingest_niftis(uri, {"CT": ds.images_dir}, obs_meta=ds.subject_table, progress=False).ok
    return uri


def test_new_columns_are_added_and_every_old_value_stays(small_store: str) -> None:
    before = RadiObject(small_store).obs_meta
    values = pd.DataFrame(
        {"prob_tumor": [0.9, 0.2], "pred_diagnosis": ["tumor", "healthy"]}, index=["case_000", "case_002"]
    )
    assert write_subject_columns(small_store, values) == ["prob_tumor", "pred_diagnosis"]
    after = RadiObject(small_store).obs_meta
    assert list(after.columns) == [*before.columns, "prob_tumor", "pred_diagnosis"]
    # obs_meta is a Table (a DataFrame subclass); compare the values as plain frames
    pd.testing.assert_frame_equal(pd.DataFrame(after[before.columns]), pd.DataFrame(before))
    rows = after.set_index("obs_subject_id")
    assert rows.at["case_000", "prob_tumor"] == 0.9 and rows.at["case_002", "pred_diagnosis"] == "healthy"
    assert np.isnan(rows.at["case_001", "prob_tumor"]) and rows.at["case_003", "pred_diagnosis"] == ""


def test_rewriting_a_column_changes_only_the_given_subjects(small_store: str) -> None:
    write_subject_columns(small_store, pd.DataFrame({"obs_subject_id": ["case_000", "case_001"], "score": [1.0, 2.0]}))
    assert write_subject_columns(small_store, pd.DataFrame({"score": [5.0]}, index=["case_001"])) == []
    scores = RadiObject(small_store).obs_meta.set_index("obs_subject_id")["score"]
    assert scores["case_000"] == 1.0 and scores["case_001"] == 5.0


def test_unknown_subjects_and_text_in_number_columns_are_refused_and_nothing_is_written(small_store: str) -> None:
    before = RadiObject(small_store).obs_meta
    with pytest.raises(ValueError, match=r"not in the subject table.*nobody"):
        write_subject_columns(small_store, pd.DataFrame({"score": [1.0]}, index=["nobody"]))
    with pytest.raises(ValueError, match="column 'age' of the subject table holds numbers"):
        write_subject_columns(small_store, pd.DataFrame({"age": ["old"]}, index=["case_000"]))
    with pytest.raises(ValueError, match="more than once"):
        write_subject_columns(small_store, pd.DataFrame({"score": [1.0, 2.0]}, index=["case_000", "case_000"]))
    pd.testing.assert_frame_equal(RadiObject(small_store).obs_meta, before)


def test_a_store_without_subject_table_says_how_to_get_one(tmp_path) -> None:
    ds = make_ct_dataset(str(tmp_path / "nifti"), n_subjects=2, shape_range=((16, 16), (16, 16), (8, 8)))
    uri = str(tmp_path / "store")
    assert ingest_niftis(uri, {"CT": ds.images_dir}, progress=False).ok
    # ingest without a table still writes one row per subject, so columns have rows to go to
    write_subject_columns(uri, pd.DataFrame({"score": [0.5]}, index=["case_000"]))
    assert RadiObject(uri).obs_meta.set_index("obs_subject_id").at["case_000", "score"] == 0.5
