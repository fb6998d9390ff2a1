"""`python -m training ...`: the offline commands, each ending with a sentence of what it did."""

from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from shared.settings import ConfigurationError
from shared.stores.errors import BackendError
from training.commands import (
    evaluate,
    fill_cache,
    list_versions,
    recommend,
    replay_events,
    report_experiment,
    retrain,
    rollback,
    sample_data,
    train,
)
from training.interactions import DataError

COMMANDS: list[ModuleType] = [
    train, recommend, evaluate, sample_data, retrain, replay_events, report_experiment, rollback,
    list_versions, fill_cache,
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (DataError, FileNotFoundError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:  # not the input: a store or the cache is down; retry later
        print(f"error: {exc}; run the command again once it is reachable (what was done "
              "stays done: publishing resumes where it stopped)", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.filename is None:  # not about a file (a backend, a bug): keep the traceback
            raise
        print(f"error: cannot use {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return code
