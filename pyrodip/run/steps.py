"""How many steps a fit takes unless told: :data:`DEFAULT_STEPS`, and more for the tasks and
noise models whose fits were still far from their plateau after that many
(``docs/performance.md``, "Every domain at ten times the default steps").

>>> default_steps("inpaint", "gaussian"), default_steps("superres", "gaussian")
(5000, 1000)
"""

from __future__ import annotations

#: The steps of a fit, and of the fits of these tasks and noise models.
DEFAULT_STEPS = 1000
SLOW_FIT_STEPS = {"inpaint": 5000, "speckle": 5000}


def default_steps(task: str, noise: str) -> int:
    """The steps a run of ``task`` under ``noise`` takes unless told.

    >>> default_steps("denoise", "gaussian"), default_steps("denoise", "speckle")
    (1000, 5000)
    """
    return max(SLOW_FIT_STEPS.get(task, DEFAULT_STEPS), SLOW_FIT_STEPS.get(noise, DEFAULT_STEPS))


def steps_help() -> str:
    """The default of ``steps`` as the help shows it.

    >>> steps_help()
    '1000; inpaint, speckle 5000'
    """
    slow = ", ".join(SLOW_FIT_STEPS)
    return f"{DEFAULT_STEPS}; {slow} {max(SLOW_FIT_STEPS.values())}"
