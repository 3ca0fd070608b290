"""A qbench worker process that kills itself with SIGKILL mid-trial, for the tuning tests that need a dead worker.

Deterministic on any machine speed: the child process dies when trial 1 reports its second epoch (one epoch of it
recorded), instead of the test polling the storage from outside and racing trials that finish in 0.1 s on a fast
CI runner."""

from __future__ import annotations

import sys

__all__ = ["self_killing_qbench"]

_SCRIPT = """
import os, signal, sys
import optuna
from qbench.cli import main
_report = optuna.trial.Trial.report
def report(self, value, step):
    if self.number == 1 and step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return _report(self, value, step)
optuna.trial.Trial.report = report
sys.exit(main(sys.argv[1:]))
"""

KILLED_TRIAL = 1


def self_killing_qbench(*args: str) -> list[str]:
    """argv of ``qbench <args>`` in a process that SIGKILLs itself in trial 1 (:data:`KILLED_TRIAL`), epoch 2."""
    return [sys.executable, "-c", _SCRIPT, *args]
