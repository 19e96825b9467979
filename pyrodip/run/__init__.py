"""One reconstruction: its settings (:mod:`~pyrodip.run.config`), its observation
(:mod:`~pyrodip.run.observe`), the fit (:mod:`~pyrodip.run.fit`), the memory it needs
(:mod:`~pyrodip.run.resources`) and its result files (:mod:`~pyrodip.run.results`).
Studies over many runs live in :mod:`pyrodip.studies`."""
