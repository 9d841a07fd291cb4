"""The evidence registry: complete, faithful to the abstract, and strictly validated."""

from __future__ import annotations

import re

import pytest

from khe_bayes.study.evidence import (
    IntervalRecord,
    PercentageRecord,
    consistent_counts,
    load_evidence,
    rounding_interval,
)
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.tomlio import read_toml


@pytest.fixture(scope="module")
def evidence():
    return load_evidence()


def _spaces(text: str) -> str:
    # the abstract prints thin spaces (U+2009) around < and >; the registry uses plain spaces
    return re.sub(r"\s+", " ", text)


def test_every_quote_is_verbatim_in_the_source(evidence, source_abstract):
    source = _spaces(source_abstract)
    for record in evidence.record:
        assert _spaces(record.quote) in source, record.id


def test_every_number_in_the_abstract_is_in_a_record(evidence, source_abstract):
    """Each number printed in the abstract's body appears in some record's values."""
    body = source_abstract.split("Kaposiform hemangioendothelioma (KHE) is", 1)[1]
    body = body.split("Kasabach-Merritt phenomenon; efficacy", 1)[0]
    printed = {float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", body)}
    printed -= {95.0, 6.0, 12.0}  # "95% CI" labels and the visit months (time points)
    registered: set[float] = set()
    for r in evidence.record:
        for attr in ("events", "total", "percent", "lower", "upper", "bound"):
            if getattr(r, attr, None) is not None:
                registered.add(float(getattr(r, attr)))
    words = {"Thirty-seven": 37.0}
    registered |= set(words.values())
    assert printed <= registered, sorted(printed - registered)
    assert {r.timepoint for r in evidence.record} >= {"6m", "12m"}


def test_quantities_of_the_abstract(evidence):
    assert evidence["n_analyzed"].events == 52
    assert (evidence["kmp_count"].events, evidence["kmp_count"].total) == (37, 52)
    assert (evidence["combination_count"].events, evidence["combination_count"].total) == (21, 37)
    ci = evidence["age_difference_ci"]
    assert isinstance(ci, IntervalRecord)
    assert (ci.lower, ci.upper, ci.decimals) == (14.39, 41.61, 2)
    assert evidence["combination_shrinkage_p"].relation == ">"
    assert evidence["drug_related_death"].events == 0


@pytest.mark.parametrize(
    ("record_id", "expected"),
    [
        ("response_6m_percent", [(50, 52)]),  # 96.15%
        ("response_12m_percent", [(51, 52)]),  # 98.08%
        ("kmp_percent", [(37, 52)]),  # 71.15%
    ],
)
def test_percentages_become_their_consistent_counts(evidence, record_id, expected):
    assert consistent_counts(evidence[record_id]) == expected


def test_uncertain_denominator_gives_every_consistent_pair(evidence):
    pairs = consistent_counts(evidence["response_12m_percent"], "of_followed_up")
    assert (39, 40) in pairs  # 97.5% rounds to 98% (closed interval admits half-up)
    assert (51, 52) in pairs
    for k, n in pairs:
        assert 97.5 - 1e-9 <= 100 * k / n <= 98.5 + 1e-9
    # brute force over every k, n in range: nothing consistent is missed
    brute = [(k, n) for n in range(40, 53) for k in range(n + 1) if 97.5 <= 100 * k / n <= 98.5]
    assert pairs == brute


def test_rounding_interval():
    assert rounding_interval(96, 0) == (95.5, 96.5)
    lo, hi = rounding_interval(2.23, 2)
    assert lo == pytest.approx(2.225) and hi == pytest.approx(2.235)


def test_percentage_without_denominator_rejected():
    with pytest.raises(ValueError, match="denominator"):
        PercentageRecord(
            id="x",
            statistic="x",
            quote="a long enough quote",
            population="all",
            description="d",
            kind="percentage",
            percent=50,
        )


def _write_modified(tmp_path, mutate):
    from importlib import resources

    import tomli_w

    raw = read_toml(resources.files("khe_bayes.study") / "data" / "evidence.toml")
    mutate(raw)
    path = tmp_path / "evidence.toml"
    path.write_bytes(tomli_w.dumps(raw).encode())
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda raw: raw["record"][3].update(upper=1.0), r"record 'age_difference_ci'.*lower"),
        (lambda raw: raw["record"][1].update(colour="red"), r"record 'kmp_count', key 'colour'"),
        (lambda raw: raw["record"][2].update(id="kmp_count"), r"duplicate record id"),
        (
            lambda raw: raw["record"][3]["interpretations"][1].update(default=True),
            r"exactly one interpretation",
        ),
        (lambda raw: raw["record"][1].update(events=60), r"exceed total"),
    ],
)
def test_bad_evidence_files_give_one_line_errors(tmp_path, mutate, message):
    path = _write_modified(tmp_path, mutate)
    with pytest.raises(InputError, match=message) as info:
        load_evidence(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_evidence(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_evidence(bad)
