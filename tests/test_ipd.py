"""IPD schema: valid files load typed; every kind of bad file is one line naming file, row and
column."""

from __future__ import annotations

import pytest

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.ipd import COLUMNS, MAX_BYTES, load_ipd, schema_table, write_ipd
from khe_bayes.study.reconstruct import reconstruct_datasets
from khe_bayes.toolkit.errors import InputError


@pytest.fixture(scope="module")
def good_frame():
    return reconstruct_datasets(load_evidence(), 1, seed=3)[0]


@pytest.fixture
def good_csv(tmp_path, good_frame):
    path = tmp_path / "ipd.csv"
    write_ipd(good_frame, path)
    return path


def test_round_trip(good_csv, good_frame):
    loaded = load_ipd(good_csv)
    assert list(loaded.columns) == list(COLUMNS)
    assert len(loaded) == 52
    assert loaded["severity_6m"].dtype.kind == "i"
    assert loaded["age_months"].to_numpy() == pytest.approx(good_frame["age_months"], abs=1e-6)


def test_schema_table_documents_every_column():
    assert list(schema_table()["column"]) == list(COLUMNS)


def _edit(path, row: int, column: str, value: str):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row - 1].split(",")
    cells[header.index(column)] = value
    lines[row - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (2, "kmp", "2", "not 0 or 1"),
        (3, "age_months", "abc", "not a number"),
        (4, "age_months", "0", "above 0"),
        (5, "severity_0m", "11", "outside 0 to 10"),
        (6, "severity_6m", "2.5", "not an integer"),
        (7, "arm", "steroid", "not one of"),
        (8, "shrinkage_12m", "250", "outside -100 to 100"),
        (9, "center", "", "empty value in a required column"),
        (10, "age_months", "inf", "not a finite number"),
    ],
)
def test_bad_values_name_file_row_and_column(good_csv, row, column, value, message):
    _edit(good_csv, row, column, value)
    with pytest.raises(InputError, match=message) as info:
        load_ipd(good_csv)
    text = str(info.value)
    assert text.startswith(str(good_csv)) and f"row {row}" in text and repr(column) in text
    assert "\n" not in text


def test_combination_without_kmp(good_csv, good_frame):
    row = int(good_frame.index[good_frame["kmp"] == 0][0]) + 2
    _edit(good_csv, row, "arm", "combination")
    with pytest.raises(InputError, match=f"row {row}.*combination therapy without KMP"):
        load_ipd(good_csv)


def test_duplicate_ids(good_csv):
    _edit(good_csv, 5, "patient_id", "P001")
    with pytest.raises(InputError, match="row 5, column 'patient_id': duplicate"):
        load_ipd(good_csv)


def test_missing_and_extra_columns(tmp_path, good_frame):
    path = tmp_path / "x.csv"
    good_frame.drop(columns=["arm"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"row 1, column 'arm': missing column"):
        load_ipd(path)
    good_frame.assign(colour="red").to_csv(path, index=False)
    with pytest.raises(InputError, match=r"column 'colour': unknown column"):
        load_ipd(path)


def test_empty_wrong_encoding_missing_and_huge(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="file is empty"):
        load_ipd(empty)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(COLUMNS).encode() + b"\nP\xe9,c,1\n")
    with pytest.raises(InputError, match=r"row 2.*not UTF-8"):
        load_ipd(latin)
    with pytest.raises(InputError, match="file not found"):
        load_ipd(tmp_path / "nope.csv")
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_BYTES + 1)
    with pytest.raises(InputError, match="larger than"):
        load_ipd(huge)


def test_missing_follow_up_is_allowed(good_csv):
    _edit(good_csv, 3, "severity_12m", "")
    _edit(good_csv, 3, "response_12m", "")
    loaded = load_ipd(good_csv)
    assert loaded["severity_12m"].isna().sum() == 1 and loaded["response_12m"].isna().sum() == 1
