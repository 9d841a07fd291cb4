"""Resource bounds (issue 16, class 5): chains are bounded, and a long run is announced up front
with a rough estimate instead of sampling silently for an unknown time."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from khe_bayes.toolkit.budget import (
    REANALYSIS_DEFAULT_S,
    WARN_AFTER_S,
    model_size,
    reanalysis_seconds,
    warn_if_long,
    warn_if_long_reanalysis,
)
from khe_bayes.toolkit.settings import MAX_CHAINS, SamplerSettings

REPO = Path(__file__).resolve().parents[1]


def build(spec_path: Path):
    from khe_bayes.families import load_spec

    spec, family = load_spec(spec_path)
    return family.build(spec, family.load_data(spec, spec_path.resolve().parent)), spec


def many_groups_spec(folder: Path, groups: int) -> Path:
    rows = "\n".join(f"g{i},{(i % 7) - 3},{1 + i % 5}" for i in range(groups))
    (folder / "groups.csv").write_text(f"group,estimate,se\n{rows}\n")
    spec = folder / "spec.toml"
    spec.write_text(
        'name = "many"\nfamily = "normal"\ndata = "groups.csv"\n\n[priors]\n'
        'mu = { dist = "Normal", mu = 0, sigma = 20 }\ntau = { dist = "HalfCauchy", beta = 5 }\n'
    )
    return spec


def test_chains_are_bounded():
    with pytest.raises(ValueError, match="less than or equal to 64"):
        SamplerSettings(chains=1000)
    assert SamplerSettings(chains=MAX_CHAINS).chains == MAX_CHAINS


def test_a_small_model_gets_no_warning():
    model, spec = build(REPO / "models" / "normal_eight_schools.toml")
    assert model_size(model) == (10, 8)  # mu, tau and eight z; eight estimates
    stream = io.StringIO()
    assert warn_if_long(model, spec.sampler, stream=stream) < 60
    assert stream.getvalue() == ""


def test_ten_thousand_groups_are_announced_before_sampling(tmp_path):
    model, spec = build(many_groups_spec(tmp_path, 10_000))
    stream = io.StringIO()
    seconds = warn_if_long(model, spec.sampler, stream=stream)
    assert seconds > WARN_AFTER_S
    text = stream.getvalue()
    assert text.startswith("khe-bayes: warning: a long fit: 10002 free parameters, 10000 ")
    assert "roughly" in text and text.count("\n") == 1


def test_reanalysis_estimate():
    defaults = SamplerSettings()
    assert reanalysis_seconds(4, defaults, sensitivity=True) == pytest.approx(REANALYSIS_DEFAULT_S)
    stream = io.StringIO()
    warn_if_long_reanalysis(4, defaults, sensitivity=True, stream=stream)
    assert stream.getvalue() == ""
    warn_if_long_reanalysis(200, defaults, sensitivity=True, stream=stream)
    assert "a long run: 200 datasets" in stream.getvalue()
