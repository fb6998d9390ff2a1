"""`sample-data`: write a synthetic interactions CSV."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from training.commands.offline_io import check_out
from training.sample_data import write_sample


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("sample-data", help=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_out(args.out, folder=False)  # the sentences train and recommend give
    path = write_sample(args.out)
    print(f"wrote sample interactions to {path}")
    return 0
