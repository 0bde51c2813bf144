"""Objectives registered for the tests through ``LEPTON_OBJECTIVES_MODULE``.

They behave like the built-in sphere except where stated, so a run with them can be
compared with an in-process run of ``sphere``.
"""

import time
from pathlib import Path

import numpy as np

from tasks.errors import DatasetNotFound
from tasks.objectives import register, sphere

# Long enough for a test to see the task running and kill or stop it, short enough to
# keep the suite quick.
SLOW_BATCH_S = 0.3
VERY_SLOW_BATCH_S = 1.0


@register("slow_sphere", bounds=(-5.0, 5.0), minimum=0.0)
def slow_sphere(candidates: np.ndarray) -> np.ndarray:
    """The sphere, after sleeping ``SLOW_BATCH_S`` per batch."""
    time.sleep(SLOW_BATCH_S)
    return sphere(candidates)


@register("very_slow_sphere", bounds=(-5.0, 5.0), minimum=0.0)
def very_slow_sphere(candidates: np.ndarray) -> np.ndarray:
    """The sphere, after sleeping ``VERY_SLOW_BATCH_S`` per batch."""
    time.sleep(VERY_SLOW_BATCH_S)
    return sphere(candidates)


@register("flaky_sphere", bounds=(-5.0, 5.0))
def flaky_sphere(candidates: np.ndarray) -> np.ndarray:
    """The sphere, but NaN where x0 > 3, infinite where x0 < -3, and raising when any
    candidate of the batch has x1 > 3 (so only those candidates should be lost)."""
    if (candidates[:, 1] > 3.0).any():
        raise ValueError("x1 above 3")
    values = sphere(candidates)
    values[candidates[:, 0] > 3.0] = np.nan
    values[candidates[:, 0] < -3.0] = np.inf
    return values


@register("pointwise_sphere", bounds=(-5.0, 5.0), vectorised=False)
def pointwise_sphere(candidate: np.ndarray) -> float:
    """The sphere written for one candidate at a time."""
    return float(sum(value * value for value in candidate.tolist()))


NEEDED_FILE = "needed-by-objective.txt"


@register("needs_file", bounds=(-5.0, 5.0), uses_data_root=True)
def needs_file(candidates: np.ndarray, data_root: Path) -> np.ndarray:
    """The sphere, but failing as an objective does when its data file is missing (not a
    candidate's fault) until ``NEEDED_FILE`` exists under the data root."""
    if not (data_root / NEEDED_FILE).exists():
        raise DatasetNotFound(f"{NEEDED_FILE}: no such file under the data root")
    return sphere(candidates)
