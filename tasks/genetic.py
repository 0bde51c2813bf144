"""The genetic algorithm's generation step on real-valued candidates inside box bounds.

One step turns a scored population into the next one: the best candidates survive
unchanged (elitism), parents are picked by tournament, paired parents are recombined by
simulated binary crossover (SBX) and each gene may then be perturbed by polynomial
mutation. Both operators are the bounded forms of Deb and Agrawal, so children never
leave the box. SBX spreads children in proportion to the distance between their
parents, which lets a converging population refine its digits on its own.

Plain numpy: every random draw comes from the generator passed in, and the number of
draws does not depend on the data, so a step is a pure function of its inputs.
"""

from dataclasses import dataclass

import numpy as np

# Genes whose parents differ by less than this are copied: SBX divides by the gap.
MIN_PARENT_GAP = 1e-14


@dataclass(frozen=True)
class GeneticParams:
    """Operator settings; the defaults are the usual ones for real-coded GAs.

    ``mutation_rate`` is the per-gene mutation probability (``None``: one over the
    dimension); ``elite`` the number of best candidates copied unchanged (``None``: one
    per 50 candidates, at least one).
    """

    tournament_size: int = 4
    crossover_rate: float = 0.9
    crossover_eta: float = 15.0
    mutation_eta: float = 20.0
    mutation_rate: float | None = None
    elite: int | None = None

    def elite_count(self, population: int) -> int:
        """Return how many candidates survive unchanged in a population of this size."""
        wanted = self.elite if self.elite is not None else max(1, population // 50)
        return min(wanted, population - 1)


def initial_population(rng: np.random.Generator, population: int, lower: np.ndarray,
                       upper: np.ndarray) -> np.ndarray:
    """Return ``population`` candidates drawn uniformly in the box, shape (P, D)."""
    return lower + rng.random((population, lower.size)) * (upper - lower)


def next_population(candidates: np.ndarray, fitness: np.ndarray, lower: np.ndarray,
                    upper: np.ndarray, rng: np.random.Generator,
                    params: GeneticParams = GeneticParams()) -> np.ndarray:
    """Return the next generation, shape (P, D), from candidates (P, D) and fitness (P,).

    Lower fitness is better; a failed evaluation must be given ``+inf`` (never NaN).
    The elite come first, in order of fitness, then the children.
    """
    size = len(candidates)
    elite = params.elite_count(size)
    children_needed = size - elite
    pairs = (children_needed + 1) // 2

    order = np.argsort(fitness, kind="stable")
    winners = tournament(fitness, 2 * pairs, params.tournament_size, rng)
    first, second = candidates[winners[0::2]], candidates[winners[1::2]]
    children = simulated_binary_crossover(first, second, lower, upper, rng,
                                          params.crossover_rate, params.crossover_eta)
    rate = params.mutation_rate if params.mutation_rate is not None else 1.0 / lower.size
    children = polynomial_mutation(children, lower, upper, rng, rate, params.mutation_eta)
    return np.vstack([candidates[order[:elite]], children[:children_needed]])


def tournament(fitness: np.ndarray, count: int, size: int,
               rng: np.random.Generator) -> np.ndarray:
    """Return ``count`` winner indices (int64), each the fittest of ``size`` random entrants.

    Entrants are drawn with replacement; ties go to the first entrant drawn.
    """
    entrants = rng.integers(0, len(fitness), size=(count, size))
    best = np.argmin(fitness[entrants], axis=1)
    return entrants[np.arange(count), best]


def simulated_binary_crossover(first: np.ndarray, second: np.ndarray, lower: np.ndarray,
                               upper: np.ndarray, rng: np.random.Generator, rate: float,
                               eta: float) -> np.ndarray:
    """Return 2 * N children of N parent pairs, shape (2N, D), by bounded SBX.

    A pair is recombined with probability ``rate``, then each gene with probability 1/2;
    ``eta`` (dimensionless, larger is closer to the parents) sets the spread.
    """
    pairs, dim = first.shape
    pair_draw = rng.random(pairs)
    gene_draw = rng.random((pairs, dim))
    spread_draw = rng.random((pairs, dim))
    swap_draw = rng.random((pairs, dim))

    low_parent = np.minimum(first, second)
    high_parent = np.maximum(first, second)
    gap = high_parent - low_parent
    active = np.less(pair_draw, rate)[:, None] & (gene_draw < 0.5) & (gap > MIN_PARENT_GAP)
    safe_gap = np.where(active, gap, 1.0)

    low_child = _sbx_child(low_parent, high_parent, safe_gap, low_parent - lower,
                           spread_draw, eta, -1.0)
    high_child = _sbx_child(low_parent, high_parent, safe_gap, upper - high_parent,
                            spread_draw, eta, 1.0)
    low_child = np.clip(low_child, lower, upper)
    high_child = np.clip(high_child, lower, upper)

    swap = swap_draw < 0.5
    child_a = np.where(active, np.where(swap, high_child, low_child), first)
    child_b = np.where(active, np.where(swap, low_child, high_child), second)
    children = np.empty((2 * pairs, dim))
    children[0::2] = child_a
    children[1::2] = child_b
    return children


def _sbx_child(low_parent: np.ndarray, high_parent: np.ndarray, gap: np.ndarray,
               room: np.ndarray, draw: np.ndarray, eta: float, side: float) -> np.ndarray:
    # The spread distribution is truncated so that the child stays within ``room`` of
    # the bound on its side: ``alpha`` is the inverse of the probability mass kept.
    beta = 1.0 + 2.0 * np.maximum(room, 0.0) / gap
    alpha = 2.0 - beta ** -(eta + 1.0)
    scaled = draw * alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(scaled <= 1.0, scaled, 1.0 / np.maximum(2.0 - scaled, 1e-300))
    beta_q = inner ** (1.0 / (eta + 1.0))
    return 0.5 * ((low_parent + high_parent) + side * beta_q * gap)


def polynomial_mutation(candidates: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                        rng: np.random.Generator, rate: float, eta: float) -> np.ndarray:
    """Return a copy of candidates (N, D) with each gene mutated with probability ``rate``.

    Bounded polynomial mutation: the step is a fraction of the bound width, more often
    small than large (``eta`` dimensionless, larger is smaller), and never crosses a bound.
    """
    gene_draw = rng.random(candidates.shape)
    step_draw = rng.random(candidates.shape)

    width = upper - lower
    below = (candidates - lower) / width
    above = (upper - candidates) / width
    power = 1.0 / (eta + 1.0)
    down = step_draw < 0.5
    base_down = 2.0 * step_draw + (1.0 - 2.0 * step_draw) * (1.0 - below) ** (eta + 1.0)
    base_up = (2.0 * (1.0 - step_draw)
               + 2.0 * (step_draw - 0.5) * (1.0 - above) ** (eta + 1.0))
    with np.errstate(invalid="ignore"):
        step = np.where(down, np.maximum(base_down, 0.0) ** power - 1.0,
                        1.0 - np.maximum(base_up, 0.0) ** power)

    mutated = np.clip(candidates + step * width, lower, upper)
    return np.where(gene_draw < rate, mutated, candidates)
