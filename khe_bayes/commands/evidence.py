"""``khe-bayes evidence``: print the evidence registry as a table."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("evidence", help="print every published number with its quote")
    p.add_argument("--file", default=None, help="an evidence TOML (default: the packaged one)")
    p.add_argument("--quotes", action="store_true", help="also print the quoted sentences")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from khe_bayes.study.evidence import load_evidence

    evidence = load_evidence(args.file)
    frame = evidence.to_frame()
    cols = ["id", "kind", "value", "population", "timepoint", "default_interpretation"]
    if args.quotes:
        cols.append("quote")
    if args.csv:
        print(frame[cols].to_csv(index=False), end="")
        return 0
    print(f"Source: {evidence.source.citation} doi:{evidence.source.doi}")
    print(f"Rounding: {evidence.source.rounding}\n")
    with pd.option_context("display.max_colwidth", 200, "display.width", 250):
        print(frame[cols].to_string(index=False))
    return 0
