"""The README's Python API example runs as printed (in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_runs_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_api_example(), "README.md", "exec"), namespace)
    import khe_bayes as kb

    result, table = namespace["result"], namespace["table"]
    assert "binomial_example" in kb.bundled_specs()
    assert {"mean", "median", "hdi95_lb", "eti95_ub", "r_hat"} <= set(table.columns)
    assert (table["hdi95_lb"] <= table["mean"]).all() and (table["mean"] <= table["hdi95_ub"]).all()
    again = kb.load_result(tmp_path / "binomial_example.nc")
    assert again["posterior"].attrs["spec"] == result["posterior"].attrs["spec"]
    rebuilt = namespace["model"]
    assert set(rebuilt.named_vars) >= set(result["posterior"].data_vars)
