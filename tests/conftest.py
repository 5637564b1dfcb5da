"""Hypothesis profiles shared by the whole suite (core and fx; never imports torch).

* ``ci`` (the default): derandomized, no example database. Every run draws the same examples,
  so ``make test`` gives the same verdict on every checkout and every machine.
* ``dev``: random draws, many more examples, the local example database: for hunting bugs.
  ``HYPOTHESIS_PROFILE=dev make test``.

A test that sets its own ``@settings`` inherits whatever it does not set from the loaded
profile, so no test should set ``derandomize`` or ``database`` itself.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_QUIET,
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=1000,
    deadline=None,
    derandomize=False,
    suppress_health_check=_QUIET,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
