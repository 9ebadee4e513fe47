"""The ``fashionbench`` command line: it parses options and calls the API
(fashionbench.api), and prints. Each command's parser sits beside its handler, by
group: train.py (train, one-vs-all), finished.py (evaluate, report, audit, predict,
export, calibrate, robustness), combine.py (ensemble, specialists), tables.py (reproduce, table, models,
data), speedrun.py, search.py (lr-find, sweep); options.py holds what they share."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .. import api
from ..api import FashionbenchError, Terminated, UsageError, signal_stop
from . import combine, finished, search, speedrun, tables, train
from .train import print_results  # noqa: F401 -- the results lines, for callers that print a summary

# Commands in the order --help lists them.
COMMANDS = (train.add_train, train.add_one_vs_all, finished.add_evaluate, tables.add_reproduce,
            speedrun.add_speedrun, tables.add_models, finished.add_report, search.add_lr_find,
            combine.add_ensemble, combine.add_specialists, search.add_sweep, tables.add_table,
            finished.add_audit, finished.add_predict, finished.add_export, finished.add_calibrate,
            finished.add_robustness,
            tables.add_data)


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line (the usage of a command with many
    options is a screenful that buries the error) and where to read more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="fashionbench",
        description="Train, evaluate and compare image classifiers on Fashion-MNIST.",
        epilog=f"Data: ${api.DATA_DIR_ENV} sets the dataset folder; ${api.MIRROR_ENV} adds download "
               "mirrors (base URLs, file:// too), tried before the built-in ones. Lists: options "
               "take comma-separated values (--seeds 0,1,2), paths are listed as arguments.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {api.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 on success, 2 for a usage error (argparse's own, or a UsageError),
    1 for everything else that fails (data, files, a run that cannot go on), 130 after
    SIGINT and 143 after SIGTERM (a run says how to resume it)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if api.World.from_env().distributed and args.command != "train":
        print(f"fashionbench: error: {args.command} runs in one process; under torchrun only "
              "train runs", file=sys.stderr)
        return 2
    # SIGTERM (schedulers, docker stop) unwinds like Ctrl-C: checkpoints stay, one line.
    main_thread = threading.current_thread() is threading.main_thread()  # where signals go
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        status = args.func(args)
    except UsageError as e:
        print(f"fashionbench: error: {e}", file=sys.stderr)
        return 2
    except FashionbenchError as e:
        print(f"fashionbench: error: {e}", file=sys.stderr)
        return getattr(e, "status", 1)
    except KeyboardInterrupt as e:
        what, status = signal_stop(e)
        if api.World.from_env().is_main:  # under torchrun every rank is signalled: rank 0 speaks
            print(f"fashionbench: {what}", file=sys.stderr)
        return status
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except OSError as e:  # a file-system failure not caught nearer: still one line
        print(f"fashionbench: error: {e.filename or 'file system'}: {api.os_cause(e)}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
