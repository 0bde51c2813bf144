"""A data-driven objective: the k-fold cross-validated error of a ridge regression.

A candidate chooses the ridge penalty and a feature subset for predicting the arrival
delay of the 2013 New York City flights (``flights.csv`` under the data root, written
by ``lepton demo``). Gene 0 is ``log10`` of the penalty; gene ``1 + j`` switches
feature ``FEATURES[j]`` on when it is at least 0.5. The fitness is the mean, over
``FOLDS`` folds, of the validation mean squared error in minutes squared.

Each worker process reads the data itself from the data root, once per version of the
file (size and modification time), and keeps it; only candidates travel in messages.
Rows with a missing value in any of the columns are dropped once, so every candidate is
scored on the same rows. Row ``i`` belongs to fold ``i mod FOLDS``.
"""

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data_root import resolve_in_root
from tasks.errors import DatasetNotFound

FLIGHTS_CSV = "flights.csv"
TARGET = "arr_delay"
FEATURES = ("month", "day", "dep_time", "sched_dep_time", "dep_delay", "sched_arr_time",
            "air_time", "distance")
FOLDS = 5
LOG10_PENALTY = (-3.0, 6.0)
SWITCH_THRESHOLD = 0.5

DIM = 1 + len(FEATURES)
BOUNDS = ((LOG10_PENALTY[0],) + (0.0,) * len(FEATURES),
          (LOG10_PENALTY[1],) + (1.0,) * len(FEATURES))


def check_data(data_root: Path) -> None:
    """Raise :class:`DatasetNotFound` unless the flights CSV is under the data root."""
    if not (data_root / FLIGHTS_CSV).is_file():
        raise DatasetNotFound(f"objective ridge_cv reads {FLIGHTS_CSV} under the data root "
                              f"{data_root}: run `lepton demo` once to write it")


def read_flights(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the features (n, F) and the target (n,) of the complete rows, float64."""
    path = resolve_in_root(FLIGHTS_CSV, data_root)
    status = path.stat()
    return _read_complete_rows(str(path), status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_complete_rows(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    # Size and mtime are in the key so that a rewritten file is read again. Reading the
    # CSV costs as much as several evaluations, and every generation would repeat it.
    frame = pd.read_csv(path, usecols=[TARGET, *FEATURES], dtype=np.float64, engine="c")
    values = frame[[*FEATURES, TARGET]].to_numpy()
    values = values[~np.isnan(values).any(axis=1)]
    values.setflags(write=False)  # shared by every later call in this process
    return values[:, :-1], values[:, -1]


def cross_validated_error(candidates: np.ndarray, data_root: Path) -> np.ndarray:
    """Return the k-fold validation MSE (N,) in minutes squared of candidates (N, DIM)."""
    features, target = read_flights(data_root)
    folds = np.arange(len(target)) % FOLDS
    errors = np.empty(len(candidates))
    for index, candidate in enumerate(candidates):
        penalty, chosen = decode(candidate)
        errors[index] = ridge_cv_error(features[:, chosen], target, folds, penalty)
    return errors


def decode(candidate: np.ndarray) -> tuple[float, np.ndarray]:
    """Return the ridge penalty and the boolean feature mask (F,) a candidate (DIM,) encodes."""
    return float(10.0 ** candidate[0]), candidate[1:] >= SWITCH_THRESHOLD


def ridge_cv_error(features: np.ndarray, target: np.ndarray, folds: np.ndarray,
                   penalty: float) -> float:
    """Return the mean over folds of the validation MSE of a ridge fit on the other folds.

    ``features`` (n, p) may have p = 0 (the fit is then the training mean); ``folds``
    (n,) holds each row's fold number. Features are standardised with the training
    fold's mean and standard deviation, the intercept is not penalised, and the fit
    minimises ``|y - b0 - Z b|^2 + penalty |b|^2``.
    """
    fold_errors = []
    for fold in np.unique(folds):
        held_out = folds == fold
        train_x, train_y = features[~held_out], target[~held_out]
        test_x, test_y = features[held_out], target[held_out]

        centre = train_x.mean(axis=0)
        scale = train_x.std(axis=0)
        scale[scale == 0.0] = 1.0
        standard = (train_x - centre) / scale
        intercept = train_y.mean()
        gram = standard.T @ standard + penalty * np.eye(standard.shape[1])
        coefficients = np.linalg.solve(gram, standard.T @ (train_y - intercept))

        predicted = intercept + ((test_x - centre) / scale) @ coefficients
        fold_errors.append(float(np.mean((test_y - predicted) ** 2)))
    return float(np.mean(fold_errors))
