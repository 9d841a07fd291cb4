"""``khe-bayes audit``: can the reported numbers all be true, under which interpretations?"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("audit", help="consistency audit of the reported numbers")
    p.add_argument(
        "--evidence", type=Path, default=None, help="evidence TOML (default: the packaged one)"
    )
    p.add_argument("--csv", action="store_true", help="print CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from khe_bayes.study.audit import audit, summarize_audit
    from khe_bayes.study.evidence import load_evidence

    table = audit(load_evidence(args.evidence))
    if args.csv:
        print(table.to_csv(index=False), end="")
        return 0
    with pd.option_context("display.max_colwidth", 140, "display.width", 250):
        print(table.drop(columns=["detail"]).to_string(index=False))
        flagged = table[table["status"] != "ok"]
        print("\nFlagged:")
        for r in flagged.itertuples():
            print(f"- [{r.status}] {r.statistic} / {r.interpretation}: {r.detail}")
    print("\n" + ", ".join(f"{k}: {v}" for k, v in summarize_audit(table).items()))
    return 0
