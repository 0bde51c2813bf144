"""Objectives by name: the built-in test functions, the ridge cross-validation objective,
and the ones a user registers from the module named by ``LEPTON_OBJECTIVES_MODULE``.

A task only ever receives an objective's name; code never travels in a message. An
objective maps candidates of shape (N, D) float64 to fitness values (N,) float64, lower
being better. Sums over the dimension are taken column by column in a fixed order, so a
candidate's fitness has the same bits whichever batch it is evaluated in.
"""

import importlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks import ridge_cv
from tasks.errors import ConfigError, InvalidSearchSetting, LeptonError, UnknownObjective

logger = logging.getLogger(__name__)

# Minimum of Schwefel's function per dimension, reached at x_i = 420.968746...
SCHWEFEL_OFFSET = 418.9828872724338
SCHWEFEL_MINIMISER = 420.9687463599820

ObjectiveFunction = Callable[..., Any]


@dataclass(frozen=True)
class Objective:
    """A registered objective and what is known about it.

    ``lower`` and ``upper`` are its usual bounds (one value for every dimension, or one
    per dimension); ``minimum`` its known optimum value and ``minimiser(dim)`` the point
    (D,) reaching it, when known. ``dim`` fixes the dimension when the objective has one;
    ``min_dim`` is the smallest it accepts. ``vectorised`` functions take (N, D) and
    return (N,); others take one candidate (D,) and return a float. ``uses_data_root``
    functions receive the data root as a second argument, and ``check_data(data_root)``
    raises before a job is enqueued when their data is missing.
    """

    name: str
    function: ObjectiveFunction
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    minimum: float | None = None
    minimiser: Callable[[int], np.ndarray] | None = None
    dim: int | None = None
    min_dim: int = 1
    vectorised: bool = True
    uses_data_root: bool = False
    check_data: Callable[[Path], None] | None = None

    def default_bounds(self, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Return the usual (lower, upper) arrays (D,) for ``dim`` dimensions, if any."""
        if self.lower is None or self.upper is None:
            return None
        lower, upper = np.asarray(self.lower, float), np.asarray(self.upper, float)
        if lower.size == 1:
            return np.full(dim, lower[0]), np.full(dim, upper[0])
        return lower, upper

    def check_dim(self, dim: int) -> None:
        """Raise :class:`InvalidSearchSetting` unless this objective accepts ``dim``."""
        if self.dim is not None and dim != self.dim:
            raise InvalidSearchSetting(f"objective {self.name!r} has exactly {self.dim} "
                                       f"dimensions, got --dim {dim}")
        if dim < self.min_dim:
            raise InvalidSearchSetting(f"objective {self.name!r} needs at least "
                                       f"{self.min_dim} dimensions, got --dim {dim}")


@dataclass(frozen=True)
class Evaluation:
    """Fitness of a batch: ``values`` (N,) float64 with ``+inf`` where ``invalid`` (N,) bool
    is set (NaN, infinite or raising); ``first_error`` describes the first failure."""

    values: np.ndarray
    invalid: np.ndarray
    first_error: str | None


_REGISTRY: dict[str, Objective] = {}


def register(name: str, *, bounds: tuple[Any, Any] | None = None,
             minimum: float | None = None,
             minimiser: Callable[[int], np.ndarray] | None = None, dim: int | None = None,
             min_dim: int = 1, vectorised: bool = True,
             uses_data_root: bool = False,
             check_data: Callable[[Path], None] | None = None
             ) -> Callable[[ObjectiveFunction], ObjectiveFunction]:
    """Decorator registering a function as objective ``name``; see the README.

    ``bounds`` is ``(lo, hi)`` with scalars or sequences of one value per dimension.
    """
    def decorate(function: ObjectiveFunction) -> ObjectiveFunction:
        if name in _REGISTRY and _REGISTRY[name].function is not function:
            raise ConfigError(f"objective {name!r} is registered twice")
        lower = upper = None
        if bounds is not None:
            lower = tuple(float(value) for value in np.atleast_1d(bounds[0]))
            upper = tuple(float(value) for value in np.atleast_1d(bounds[1]))
        _REGISTRY[name] = Objective(name, function, lower, upper, minimum, minimiser, dim,
                                    min_dim, vectorised, uses_data_root, check_data)
        return function
    return decorate


def load_objectives(module_name: str | None) -> None:
    """Import the user's objective module (once per process) so that it registers."""
    if not module_name:
        return
    try:
        importlib.import_module(module_name)
    except Exception as error:
        raise ConfigError(f"LEPTON_OBJECTIVES_MODULE={module_name!r} cannot be imported: "
                          f"{type(error).__name__}: {error}") from error


def get_objective(name: str, module_name: str | None = None) -> Objective:
    """Return the objective registered as ``name``, loading the user's module first."""
    load_objectives(module_name)
    if name not in _REGISTRY:
        raise UnknownObjective(f"unknown objective {name!r}: registered objectives are "
                               f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def objective_names(module_name: str | None = None) -> list[str]:
    """Return the registered names, sorted."""
    load_objectives(module_name)
    return sorted(_REGISTRY)


def evaluate(objective: Objective, candidates: np.ndarray,
             data_root: Path | None = None) -> Evaluation:
    """Score candidates (N, D); a candidate whose value is NaN, infinite or raises is invalid.

    A vectorised objective that raises is retried one candidate at a time, so that one
    bad candidate does not spoil the others. A :class:`LeptonError` (missing data, say)
    is not about a candidate and propagates.
    """
    try:
        values = _call(objective, candidates, data_root)
        first_error = None
    except LeptonError:
        raise
    except Exception as error:
        logger.debug("batch raised objective=%s error=%s", objective.name, error)
        values, first_error = _evaluate_one_by_one(objective, candidates, data_root)

    invalid = ~np.isfinite(values)
    if first_error is None and invalid.any():
        index = int(np.argmax(invalid))
        first_error = f"candidate {index} gave {values[index]}"
    return Evaluation(np.where(invalid, np.inf, values), invalid, first_error)


def _call(objective: Objective, candidates: np.ndarray, data_root: Path | None) -> np.ndarray:
    extra = (data_root,) if objective.uses_data_root else ()
    if objective.vectorised:
        values = np.asarray(objective.function(candidates, *extra), dtype=np.float64)
    else:
        values = np.array([float(objective.function(row, *extra)) for row in candidates])
    if values.shape != (len(candidates),):
        raise ValueError(f"objective {objective.name!r} returned shape {values.shape} for "
                         f"{len(candidates)} candidates")
    return values


def _evaluate_one_by_one(objective: Objective, candidates: np.ndarray,
                         data_root: Path | None) -> tuple[np.ndarray, str | None]:
    values = np.full(len(candidates), np.nan)
    first_error = None
    for index in range(len(candidates)):
        try:
            values[index] = _call(objective, candidates[index:index + 1], data_root)[0]
        except LeptonError:
            raise
        except Exception as error:
            if first_error is None:
                first_error = f"candidate {index} raised {type(error).__name__}: {error}"
    return values, first_error


def sum_columns(terms: np.ndarray) -> np.ndarray:
    """Return the row sums (N,) of ``terms`` (N, D), adding columns left to right.

    numpy's own reduction may pair terms differently for different N; this order does
    not depend on N, which keeps results bit-identical across batch sizes.
    """
    total = np.zeros(len(terms))
    for column in terms.T:
        total += column
    return total


def _zeros(dim: int) -> np.ndarray:
    return np.zeros(dim)


def _ones(dim: int) -> np.ndarray:
    return np.ones(dim)


@register("sphere", bounds=(-5.12, 5.12), minimum=0.0, minimiser=_zeros)
def sphere(candidates: np.ndarray) -> np.ndarray:
    """Sum of squares; minimum 0 at the origin."""
    return sum_columns(candidates ** 2)


@register("rosenbrock", bounds=(-5.0, 10.0), minimum=0.0, minimiser=_ones, min_dim=2)
def rosenbrock(candidates: np.ndarray) -> np.ndarray:
    """Rosenbrock's valley; minimum 0 at (1, ..., 1)."""
    head, tail = candidates[:, :-1], candidates[:, 1:]
    return sum_columns(100.0 * (tail - head ** 2) ** 2 + (1.0 - head) ** 2)


@register("rastrigin", bounds=(-5.12, 5.12), minimum=0.0, minimiser=_zeros)
def rastrigin(candidates: np.ndarray) -> np.ndarray:
    """Rastrigin's egg box; minimum 0 at the origin, a local minimum near every integer."""
    dim = candidates.shape[1]
    return 10.0 * dim + sum_columns(candidates ** 2 - 10.0 * np.cos(2.0 * math.pi * candidates))


@register("ackley", bounds=(-32.768, 32.768), minimum=0.0, minimiser=_zeros)
def ackley(candidates: np.ndarray) -> np.ndarray:
    """Ackley's function; minimum 0 at the origin (computed as about 4e-16 there)."""
    dim = candidates.shape[1]
    spread = np.sqrt(sum_columns(candidates ** 2) / dim)
    ripple = sum_columns(np.cos(2.0 * math.pi * candidates)) / dim
    return -20.0 * np.exp(-0.2 * spread) - np.exp(ripple) + 20.0 + math.e


@register("griewank", bounds=(-600.0, 600.0), minimum=0.0, minimiser=_zeros)
def griewank(candidates: np.ndarray) -> np.ndarray:
    """Griewank's function; minimum 0 at the origin."""
    scale = np.sqrt(np.arange(1, candidates.shape[1] + 1))
    product = np.ones(len(candidates))
    for column in (np.cos(candidates / scale)).T:
        product *= column
    return 1.0 + sum_columns(candidates ** 2) / 4000.0 - product


@register("schwefel", bounds=(-500.0, 500.0), minimum=0.0,
          minimiser=lambda dim: np.full(dim, SCHWEFEL_MINIMISER))
def schwefel(candidates: np.ndarray) -> np.ndarray:
    """Schwefel's function; minimum about 0 near (420.9687, ...), far from the next best."""
    dim = candidates.shape[1]
    return SCHWEFEL_OFFSET * dim - sum_columns(candidates * np.sin(np.sqrt(np.abs(candidates))))


register("ridge_cv", bounds=ridge_cv.BOUNDS, dim=ridge_cv.DIM,
         uses_data_root=True, check_data=ridge_cv.check_data)(ridge_cv.cross_validated_error)
