"""A plugin for the fault tests: priors whose fits fail as real ones do, on Dask workers only.

* ``test_killonce``: the first fit to use it, in any worker process, kills its own process
  with SIGKILL (as the kernel's out-of-memory killer does); later fits are healthy.
* ``test_oom``: every fit raises ``torch.OutOfMemoryError``, as a fit too large for its GPU.

Both act only in a process that is a Dask worker and only while ``PYRODIP_TEST_FAULTS`` names
a folder (where ``test_killonce`` leaves its marker), so that nothing else is ever killed.
"""

import os
import signal
from pathlib import Path

import torch

from pyrodip.bayes.priors import PRIORS, NormalPrior

FAULTS = "PYRODIP_TEST_FAULTS"


def _on_a_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return False
    return FAULTS in os.environ


@PRIORS.register("test_killonce")
class KilledOncePrior(NormalPrior):
    def family(self, scale):
        marker = Path(os.environ.get(FAULTS, ".")) / "killed"
        if _on_a_worker() and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().family(scale)


@PRIORS.register("test_oom")
class OutOfMemoryPrior(NormalPrior):
    def family(self, scale):
        if _on_a_worker():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return super().family(scale)
