"""A run folder, and the one package that knows one: the names of its files, what kind
of folder it is, what state it is in, and every file read from or written to it.

Every folder fashionbench trains or combines into (a run, one-vs-all's ten networks,
an ensemble, a generalist with specialists, and their binary members) is a
``RunDir``. Nothing else in fashionbench spells its files' names (``CONFIG``,
``CHECKPOINT``, ``HISTORY``, ``MODEL``, ``SUMMARY``, ...), tells its kind (``Kind``,
from ``kind_of`` alone) or its state (``State``, from ``state_of`` alone), or reads
and writes them. ``Summary`` (summary.py) is the one schema of every finished folder's results.

A command that needs a trained run's model asks for a ``FinishedRun``
(``RunDir.finished``): its config and summary read strictly, once, and its kind
checked, or one line saying why the folder is not that, before any data loads.

``files.py`` holds the names, the state, and the files read without a folder object;
``folder.py`` the folder (``RunDir``), its kind, and ``FinishedRun``.
"""

from ..summary import TRAINED, Kind, Summary
from .files import (
    CHECKPOINT,
    CONFIG,
    EXPORTS,
    FILES,
    HISTORY,
    MODEL,
    REPORT,
    ROBUSTNESS,
    SETUP,
    SUMMARY,
    SUMMARY_SCHEMA,
    TENSORBOARD,
    TRACKING,
    SavedModel,
    State,
    finished_under,
    member_name,
    pair_name,
    read_history,
    read_summary,
    state_of,
    write_summary,
)
from .folder import FinishedRun, RunDir, finished, kind_of

__all__ = [
    "CHECKPOINT", "CONFIG", "EXPORTS", "FILES", "HISTORY", "MODEL", "REPORT", "ROBUSTNESS", "SETUP", "SUMMARY",
    "SUMMARY_SCHEMA", "TENSORBOARD", "TRACKING", "TRAINED", "FinishedRun", "Kind", "RunDir", "SavedModel", "State",
    "Summary", "finished", "finished_under", "kind_of", "member_name", "pair_name", "read_history", "read_summary",
    "state_of", "write_summary",
]
