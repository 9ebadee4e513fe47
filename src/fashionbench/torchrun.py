"""``python -m fashionbench.torchrun``: torchrun, with the same options, that exits as a
shell reports a process a signal stopped (143 after SIGTERM, 130 after Ctrl-C).

torch's own torchrun, signalled, forwards the signal to every rank, waits for them,
and then lets the signal out of its ``main()`` as a ``SignalException``: a traceback of
its own and exit status 1, whatever the ranks did. By then each rank has kept the
checkpoint of its last finished epoch and rank 0 has printed the command that
continues the run; that line is the one to read. torchrun's script is torch's, not
ours; this launcher is its ``main()`` with that one exception turned into the exit
status a scheduler or a script can tell from a failure. Everything else (a rank that
fails, torchrun's summary of it) is torchrun's as ever."""

from __future__ import annotations

import os
import sys

# The launcher's own command, which the ranks inherit: the line that says how to continue
# a stopped run names this launcher again rather than torch's torchrun.
LAUNCHER_VARIABLE = "FASHIONBENCH_LAUNCHER"
LAUNCHER = "python -m fashionbench.torchrun"


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.run import main as torchrun

    os.environ[LAUNCHER_VARIABLE] = LAUNCHER
    try:
        torchrun(argv)  # None: sys.argv[1:], as torchrun reads them
    except SignalException as e:  # torchrun has stopped the ranks; they said what to do
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
