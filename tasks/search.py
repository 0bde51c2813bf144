"""One optimisation run as data: its settings, its state between generations, and the
bookkeeping of a generation (best so far, history, stop criteria) around the GA and PSO
steps.

A state holds the candidates of the next generation to evaluate. :func:`advance` takes
their fitness and returns the following state; it is a pure function, and the random
generator of generation ``g`` is derived from ``(seed, g)`` alone, so a run gives the
same bits however its evaluations are spread over processes, batched, interrupted or
repeated. :func:`run_in_process` drives the same steps without Celery.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tasks import genetic, swarm
from tasks.arrays import FLOAT64
from tasks.errors import InvalidBounds, InvalidSearchSetting
from tasks.objectives import Objective

ALGORITHMS = ("ga", "pso")
MAX_SEED = 2 ** 63 - 1
STOP_REASONS = ("target", "stall", "generations")

Bounds = tuple[float, float] | Sequence[tuple[float, float]] | None


@dataclass(frozen=True)
class SearchConfig:
    """What to search: algorithm, objective, box, population and stop criteria.

    ``lower`` and ``upper`` hold one bound per dimension. ``generations`` counts
    evaluated populations (so ``population * generations`` evaluations at most);
    ``batch`` is the number of candidates one fitness task scores. The search stops
    early once the best fitness is at most ``target``, or after ``stall`` generations
    without improvement.
    """

    algorithm: str
    objective: str
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    population: int
    generations: int
    seed: int
    batch: int
    target: float | None = None
    stall: int | None = None

    @property
    def dim(self) -> int:
        """The number of dimensions."""
        return len(self.lower)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the lower and upper bounds as float64 arrays (D,)."""
        return np.array(self.lower, dtype=np.float64), np.array(self.upper, dtype=np.float64)

    def batch_slices(self) -> list[slice]:
        """Return the candidate rows each fitness task of a generation scores."""
        return [slice(start, min(start + self.batch, self.population))
                for start in range(0, self.population, self.batch)]

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values."""
        return {"algorithm": self.algorithm, "objective": self.objective,
                "lower": list(self.lower), "upper": list(self.upper),
                "population": self.population, "generations": self.generations,
                "seed": self.seed, "batch": self.batch, "target": self.target,
                "stall": self.stall}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SearchConfig":
        """Rebuild settings written by :meth:`to_json`."""
        return cls(**{**data, "lower": tuple(data["lower"]), "upper": tuple(data["upper"])})


@dataclass(frozen=True)
class SearchState:
    """A run between generations.

    ``candidates`` (P, D) are the population of generation ``generation`` (counted from
    0), still to be evaluated. ``memory`` holds what the algorithm carries over (for PSO:
    ``velocities`` and ``best_positions`` (P, D), ``best_fitness`` (P,)). ``best_x`` (D,)
    and ``best_f`` are the best candidate evaluated so far (``best_f`` is ``inf`` before
    any valid evaluation). ``history_best`` and ``history_mean`` hold each evaluated
    generation's best and mean valid fitness (``None`` when none was valid).
    ``invalid`` counts evaluations that gave NaN, infinity or raised; ``stalled`` the
    generations since ``best_f`` last improved; ``stop_reason`` is set once the run is over.
    """

    generation: int
    candidates: np.ndarray
    memory: dict[str, np.ndarray] = field(default_factory=dict)
    best_x: np.ndarray | None = None
    best_f: float = math.inf
    history_best: tuple[float | None, ...] = ()
    history_mean: tuple[float | None, ...] = ()
    evaluations: int = 0
    invalid: int = 0
    stalled: int = 0
    stop_reason: str | None = None

    def to_parts(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Return the scalars (JSON-ready, with each array's shape) and the arrays as raw
        little-endian float64 bytes, which Redis stores without any text conversion."""
        arrays = {"candidates": self.candidates,
                  "history_best": _with_nan(self.history_best),
                  "history_mean": _with_nan(self.history_mean)}
        arrays.update({f"memory.{name}": values for name, values in self.memory.items()})
        if self.best_x is not None:
            arrays["best_x"] = self.best_x
        scalars = {
            "generation": self.generation,
            "best_f": finite_or_none(self.best_f),
            "evaluations": self.evaluations,
            "invalid": self.invalid,
            "stalled": self.stalled,
            "stop_reason": self.stop_reason,
            "shapes": {name: list(values.shape) for name, values in arrays.items()},
        }
        raw = {name: np.ascontiguousarray(values, dtype=FLOAT64).tobytes()
               for name, values in arrays.items()}
        return scalars, raw

    @classmethod
    def from_parts(cls, scalars: dict[str, Any], raw: dict[str, bytes]) -> "SearchState":
        """Rebuild a state from :meth:`to_parts`."""
        arrays = {name: np.frombuffer(raw[name], dtype=FLOAT64).reshape(shape).copy()
                  for name, shape in scalars["shapes"].items()}
        return cls(
            generation=int(scalars["generation"]),
            candidates=arrays["candidates"],
            memory={name.removeprefix("memory."): values for name, values in arrays.items()
                    if name.startswith("memory.")},
            best_x=arrays.get("best_x"),
            best_f=math.inf if scalars["best_f"] is None else float(scalars["best_f"]),
            history_best=_with_none(arrays["history_best"]),
            history_mean=_with_none(arrays["history_mean"]),
            evaluations=int(scalars["evaluations"]),
            invalid=int(scalars["invalid"]),
            stalled=int(scalars["stalled"]),
            stop_reason=scalars["stop_reason"],
        )


def build_config(algorithm: str, objective: Objective, dim: int, bounds: Bounds,
                 population: int, generations: int, seed: int, batch: int,
                 target: float | None = None, stall: int | None = None) -> SearchConfig:
    """Validate a request and return its settings; nothing here touches a cluster.

    ``bounds`` is ``(lo, hi)`` for every dimension, one ``(lo, hi)`` per dimension, or
    ``None`` for the objective's usual bounds.
    """
    if algorithm not in ALGORITHMS:
        raise InvalidSearchSetting(f"unknown algorithm {algorithm!r}: use "
                                   f"{' or '.join(ALGORITHMS)}")
    _require_int("dimension (--dim)", dim, 1)
    objective.check_dim(dim)
    _require_int("population (--population)", population, 2)
    _require_int("generations (--generations)", generations, 1)
    _require_int("batch (--batch)", batch, 1)
    _require_int("seed (--seed)", seed, 0, MAX_SEED)
    if stall is not None:
        _require_int("stall (--stall)", stall, 1)
    if target is not None and not math.isfinite(target):
        raise InvalidSearchSetting(f"target (--target) must be a finite number, got {target}")

    lower, upper = resolve_bounds(objective, dim, bounds)
    return SearchConfig(algorithm, objective.name, tuple(lower.tolist()),
                        tuple(upper.tolist()), population, generations, seed, batch,
                        None if target is None else float(target), stall)


def resolve_bounds(objective: Objective, dim: int,
                   bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    """Return finite lower and upper bounds (D,) with lower below upper everywhere."""
    if bounds is None:
        default = objective.default_bounds(dim)
        if default is None:
            raise InvalidBounds(f"objective {objective.name!r} has no usual bounds: "
                                "give --bounds LO:HI")
        lower, upper = default
    else:
        pairs = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
        if len(pairs) == 1:
            pairs = np.repeat(pairs, dim, axis=0)
        if len(pairs) != dim:
            raise InvalidBounds(f"{len(pairs)} bounds for {dim} dimensions: give one LO:HI "
                                "for all dimensions or one per dimension")
        lower, upper = pairs[:, 0], pairs[:, 1]

    if lower.size != dim:
        raise InvalidBounds(f"objective {objective.name!r} has {lower.size} usual bounds "
                            f"but --dim is {dim}")
    for index in range(dim):
        low, high = float(lower[index]), float(upper[index])
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InvalidBounds(f"bounds of dimension {index} must be finite, got "
                                f"{low}:{high}")
        if low >= high:
            raise InvalidBounds(f"lower bound {low} is not below upper bound {high} in "
                                f"dimension {index}")
    return lower, upper


def _require_int(name: str, value: int, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidSearchSetting(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        upper = f" and at most {high}" if high is not None else ""
        raise InvalidSearchSetting(f"{name} must be at least {low}{upper}, got {value}")


def generation_rng(seed: int, generation: int) -> np.random.Generator:
    """Return the generator that makes generation ``generation``'s population."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(generation,)))


def initial_state(config: SearchConfig) -> SearchState:
    """Return the state holding generation 0, drawn uniformly in the box."""
    lower, upper = config.bounds()
    rng = generation_rng(config.seed, 0)
    if config.algorithm == "ga":
        return SearchState(0, genetic.initial_population(rng, config.population, lower, upper))
    particles = swarm.initial_swarm(rng, config.population, lower, upper)
    return SearchState(0, particles.positions, _swarm_memory(particles))


def advance(config: SearchConfig, state: SearchState, fitness: np.ndarray,
            invalid: int) -> SearchState:
    """Return the state after generation ``state.generation`` was scored.

    ``fitness`` (P,) float64 is aligned with ``state.candidates``, ``+inf`` for the
    ``invalid`` evaluations. The next population is drawn unless a stop criterion holds.
    """
    if fitness.shape != (config.population,):
        raise ValueError(f"fitness of shape {fitness.shape} for {config.population} candidates")
    valid = np.isfinite(fitness)
    generation_best = float(fitness.min()) if valid.any() else None
    generation_mean = _ordered_mean(fitness[valid]) if valid.any() else None

    best_x, best_f, stalled = state.best_x, state.best_f, state.stalled + 1
    if generation_best is not None and generation_best < state.best_f:
        best_index = int(np.argmin(fitness))
        best_x, best_f, stalled = state.candidates[best_index].copy(), generation_best, 0

    scored = replace(
        state, generation=state.generation + 1, best_x=best_x, best_f=best_f,
        history_best=(*state.history_best, generation_best),
        history_mean=(*state.history_mean, generation_mean),
        evaluations=state.evaluations + config.population,
        invalid=state.invalid + invalid, stalled=stalled)
    reason = stop_reason(config, scored)
    if reason is not None:
        return replace(scored, stop_reason=reason)
    return _next_population(config, scored, fitness)


def stop_reason(config: SearchConfig, state: SearchState) -> str | None:
    """Return why the run is over after ``state.generation`` generations, or None."""
    if config.target is not None and state.best_f <= config.target:
        return "target"
    if config.stall is not None and state.stalled >= config.stall:
        return "stall"
    if state.generation >= config.generations:
        return "generations"
    return None


def _next_population(config: SearchConfig, state: SearchState,
                     fitness: np.ndarray) -> SearchState:
    lower, upper = config.bounds()
    rng = generation_rng(config.seed, state.generation)
    if config.algorithm == "ga":
        candidates = genetic.next_population(state.candidates, fitness, lower, upper, rng)
        return replace(state, candidates=candidates)
    particles = swarm.Swarm(state.candidates, state.memory["velocities"],
                            state.memory["best_positions"], state.memory["best_fitness"])
    # Generation g (counted from 1) was just scored: this is step g - 1 of the plan, from 0.
    progress = (state.generation - 1) / config.generations
    moved = swarm.next_swarm(particles, fitness, lower, upper, rng, progress)
    return replace(state, candidates=moved.positions, memory=_swarm_memory(moved))


def _swarm_memory(particles: swarm.Swarm) -> dict[str, np.ndarray]:
    return {"velocities": particles.velocities, "best_positions": particles.best_positions,
            "best_fitness": particles.best_fitness}


def _ordered_mean(values: np.ndarray) -> float:
    # fsum is correctly rounded, so the mean does not depend on how terms are paired.
    return math.fsum(values.tolist()) / len(values)


def run_in_process(config: SearchConfig,
                   evaluate_batch: Callable[[np.ndarray], tuple[np.ndarray, int]],
                   on_generation: Callable[[SearchState], None] | None = None
                   ) -> SearchState:
    """Run the whole search in this process and return its final state.

    ``evaluate_batch(candidates (N, D))`` returns the fitness (N,) with ``+inf`` for
    failures, and the number of failures. The result equals a distributed run's.
    """
    state = initial_state(config)
    while state.stop_reason is None:
        fitness, invalid = evaluate_batch(state.candidates)
        state = advance(config, state, fitness, invalid)
        if on_generation is not None:
            on_generation(state)
    return state


def summarise(config: SearchConfig, state: SearchState) -> dict[str, Any]:
    """Return the result fields a finished run contributes (see the README)."""
    return {
        "kind": "optimization",
        "algorithm": config.algorithm,
        "objective": config.objective,
        "dim": config.dim,
        "lower": list(config.lower),
        "upper": list(config.upper),
        "population": config.population,
        "batch": config.batch,
        "best_x": None if state.best_x is None else state.best_x.tolist(),
        "best_f": finite_or_none(state.best_f),
        "evaluations": state.evaluations,
        "invalid_evaluations": state.invalid,
        "generations": state.generation,
        "stop_reason": state.stop_reason,
        "history": {"best": list(state.history_best), "mean": list(state.history_mean)},
        "seed": config.seed,
        "target": config.target,
        "stall": config.stall,
    }


def finite_or_none(value: float) -> float | None:
    """Return ``value``, or None when it is not finite (JSON has no infinity)."""
    return float(value) if math.isfinite(value) else None


def _with_nan(values: tuple[float | None, ...]) -> np.ndarray:
    return np.array([math.nan if value is None else value for value in values],
                    dtype=np.float64)


def _with_none(values: np.ndarray) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(value) else value for value in values.tolist())
