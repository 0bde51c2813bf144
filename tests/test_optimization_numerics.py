"""The numerical parts of the optimiser, run in this process: objectives against textbook
formulas and scikit-learn, operators against their invariants, settings validation."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import rosen
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from producer.optimization_cli import parse_bounds
from tasks import genetic, ridge_cv, swarm
from tasks.errors import DatasetNotFound, InvalidBounds, InvalidSearchSetting, UnknownObjective
from tasks.objectives import evaluate, get_objective
from tasks.search import (
    SearchState,
    advance,
    build_config,
    generation_rng,
    initial_state,
    run_in_process,
)

FIXTURES = "tests.objective_fixtures"


def textbook(name: str, x: list[float]) -> float:
    """Each function written out term by term, independently of the vectorised code."""
    d = len(x)
    if name == "sphere":
        return sum(v * v for v in x)
    if name == "rosenbrock":
        return float(rosen(np.array(x)))
    if name == "rastrigin":
        return 10 * d + sum(v * v - 10 * math.cos(2 * math.pi * v) for v in x)
    if name == "ackley":
        return (-20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / d))
                - math.exp(sum(math.cos(2 * math.pi * v) for v in x) / d) + 20 + math.e)
    if name == "griewank":
        product = 1.0
        for i, v in enumerate(x, start=1):
            product *= math.cos(v / math.sqrt(i))
        return 1 + sum(v * v for v in x) / 4000 - product
    if name == "schwefel":
        return 418.9828872724338 * d - sum(v * math.sin(math.sqrt(abs(v))) for v in x)
    raise AssertionError(name)


BUILT_IN = ["sphere", "rosenbrock", "rastrigin", "ackley", "griewank", "schwefel"]


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("dim", [2, 5, 10])
def test_built_in_objectives_match_their_textbook_formulas(name: str, dim: int) -> None:
    objective = get_objective(name)
    lower, upper = objective.default_bounds(dim)  # type: ignore[misc]
    points = lower + np.random.default_rng(dim).random((40, dim)) * (upper - lower)

    values = evaluate(objective, points).values

    expected = [textbook(name, row) for row in points.tolist()]
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_objectives_reach_their_known_minimum_at_their_minimiser(name: str) -> None:
    objective = get_objective(name)
    for dim in (2, 7):
        assert objective.minimiser is not None and objective.minimum is not None
        at_optimum = evaluate(objective, objective.minimiser(dim)[None, :]).values[0]
        assert at_optimum == pytest.approx(objective.minimum, abs=1e-9 * dim)


def test_fitness_has_the_same_bits_whatever_the_batch_size() -> None:
    points = np.random.default_rng(7).uniform(-5, 5, size=(37, 10))
    for name in BUILT_IN:
        objective = get_objective(name)
        whole = evaluate(objective, points).values
        one_by_one = np.concatenate([evaluate(objective, points[i:i + 1]).values
                                     for i in range(len(points))])
        halves = np.concatenate([evaluate(objective, part).values
                                 for part in (points[:11], points[11:])])
        assert whole.tobytes() == one_by_one.tobytes() == halves.tobytes(), name


def test_nan_infinite_and_raising_candidates_are_marked_worst_and_counted() -> None:
    objective = get_objective("flaky_sphere", FIXTURES)
    points = np.array([[0.5, 0.5], [3.5, 0.0], [-3.5, 0.0], [0.0, 3.5], [1.0, -1.0]])

    evaluation = evaluate(objective, points)

    assert evaluation.invalid.tolist() == [False, True, True, True, False]
    assert evaluation.values[[0, 4]].tolist() == [0.5, 2.0]
    assert np.isinf(evaluation.values[1:4]).all() and (evaluation.values[1:4] > 0).all()
    assert "ValueError: x1 above 3" in (evaluation.first_error or "")


def test_pointwise_objectives_are_applied_to_each_candidate() -> None:
    points = np.random.default_rng(3).uniform(-5, 5, size=(9, 4))
    values = evaluate(get_objective("pointwise_sphere", FIXTURES), points).values
    assert values.tobytes() == evaluate(get_objective("sphere"), points).values.tobytes()


@pytest.mark.parametrize("algorithm", ["ga", "pso"])
def test_candidates_never_leave_asymmetric_bounds(algorithm: str) -> None:
    objective = get_objective("sphere")
    bounds = [(-1.0, 0.5), (2.0, 9.0), (-100.0, -99.0)]
    config = build_config(algorithm, objective, 3, bounds, 30, 60, seed=5, batch=30)
    lower, upper = config.bounds()
    seen = []

    final = run_in_process(config, lambda c: (evaluate(objective, c).values, 0),
                           lambda state: seen.append(state.candidates))

    assert final.generation == 60
    for candidates in seen:
        assert (candidates >= lower).all() and (candidates <= upper).all()
    # The sphere's minimum inside this box is at the corner nearest the origin.
    np.testing.assert_allclose(final.best_x, [0.0, 2.0, -99.0], atol=1e-3)


def test_genetic_step_keeps_the_elite_and_is_a_function_of_its_generator() -> None:
    lower, upper = np.full(4, -2.0), np.full(4, 2.0)
    population = genetic.initial_population(generation_rng(1, 0), 50, lower, upper)
    fitness = (population ** 2).sum(axis=1)

    first = genetic.next_population(population, fitness, lower, upper, generation_rng(1, 1))
    again = genetic.next_population(population, fitness, lower, upper, generation_rng(1, 1))
    other = genetic.next_population(population, fitness, lower, upper, generation_rng(2, 1))

    assert first.shape == population.shape
    assert first.tobytes() == again.tobytes() and first.tobytes() != other.tobytes()
    elite = genetic.GeneticParams().elite_count(50)
    np.testing.assert_array_equal(first[:elite], population[np.argsort(fitness)[:elite]])


def test_swarm_step_follows_the_update_equation_inside_the_bounds() -> None:
    lower, upper = np.full(3, -10.0), np.full(3, 10.0)
    params = swarm.SwarmParams()
    particles = swarm.initial_swarm(generation_rng(4, 0), 20, lower, upper, params)
    fitness = (particles.positions ** 2).sum(axis=1)

    moved = swarm.next_swarm(particles, fitness, lower, upper, generation_rng(4, 1), 0.5,
                             params)

    draws = generation_rng(4, 1)
    own, social = draws.random((20, 3)), draws.random((20, 3))
    leader = particles.positions[np.argmin(fitness)]
    halfway = (params.inertia + params.final_inertia) / 2
    velocity = (halfway * particles.velocities
                + params.cognitive * own * (particles.positions - particles.positions)
                + params.social * social * (leader - particles.positions))
    velocity = np.clip(velocity, -4.0, 4.0)
    expected = np.clip(particles.positions + velocity, lower, upper)
    np.testing.assert_allclose(moved.positions, expected, rtol=1e-15)
    np.testing.assert_array_equal(moved.best_fitness, fitness)


def test_swarm_inertia_falls_linearly_over_the_run_and_stays_in_range() -> None:
    params = swarm.SwarmParams()

    assert swarm.inertia_at(0.0, params) == params.inertia
    assert swarm.inertia_at(1.0, params) == params.final_inertia
    assert swarm.inertia_at(0.25, params) == pytest.approx(0.7298 - 0.25 * (0.7298 - 0.4))
    assert swarm.inertia_at(-1.0, params) == params.inertia
    assert swarm.inertia_at(2.0, params) == params.final_inertia


@pytest.mark.parametrize("algorithm", ["ga", "pso"])
def test_a_state_survives_its_checkpoint_encoding_bit_for_bit(algorithm: str) -> None:
    objective = get_objective("flaky_sphere", FIXTURES)
    config = build_config(algorithm, objective, 3, None, 12, 5, seed=9, batch=4)
    state = initial_state(config)
    for _ in range(3):
        evaluation = evaluate(objective, state.candidates)
        state = advance(config, state, evaluation.values, int(evaluation.invalid.sum()))

    copy = SearchState.from_parts(*state.to_parts())

    assert copy.to_parts() == state.to_parts()
    assert copy.history_best == state.history_best and copy.best_f == state.best_f


def test_stop_criteria_target_and_stall_end_the_search_early() -> None:
    objective = get_objective("sphere")
    reached = run_in_process(build_config("pso", objective, 2, None, 20, 500, 1, 20,
                                          target=1e-3),
                             lambda c: (evaluate(objective, c).values, 0))
    stalled = run_in_process(build_config("ga", get_objective("rastrigin"), 2, None, 10, 500,
                                          1, 10, stall=5),
                             lambda c: (evaluate(get_objective("rastrigin"), c).values, 0))

    assert reached.stop_reason == "target" and reached.best_f <= 1e-3
    assert reached.generation < 500
    assert stalled.stop_reason == "stall" and stalled.stalled == 5


@pytest.mark.parametrize(("request_", "message"), [
    ({"dim": 0}, "dimension (--dim) must be at least 1"),
    ({"population": 1}, "population (--population) must be at least 2"),
    ({"generations": 0}, "generations (--generations) must be at least 1"),
    ({"batch": 0}, "batch (--batch) must be at least 1"),
    ({"seed": -1}, "seed (--seed) must be at least 0"),
    ({"target": math.nan}, "target (--target) must be a finite number"),
])
def test_out_of_range_settings_are_refused_with_the_option_named(request_: dict,
                                                                 message: str) -> None:
    settings = {"dim": 3, "population": 10, "generations": 5, "seed": 1, "batch": 5,
                **request_}
    with pytest.raises(InvalidSearchSetting, match=re_escape(message)):
        build_config("ga", get_objective("sphere"), settings["dim"], None,
                     settings["population"], settings["generations"], settings["seed"],
                     settings["batch"], settings.get("target"))


@pytest.mark.parametrize(("bounds", "message"), [
    ((1.0, -1.0), "lower bound 1.0 is not below upper bound -1.0 in dimension 0"),
    ([(-1.0, 1.0), (2.0, 2.0), (0.0, 1.0)], "not below upper bound 2.0 in dimension 1"),
    ((-math.inf, 1.0), "bounds of dimension 0 must be finite"),
    ([(-1.0, 1.0), (-1.0, 1.0)], "2 bounds for 3 dimensions"),
])
def test_bad_bounds_are_refused_with_the_dimension_named(bounds: object, message: str) -> None:
    with pytest.raises(InvalidBounds, match=re_escape(message)):
        build_config("pso", get_objective("sphere"), 3, bounds, 10, 5, 1, 5)  # type: ignore


def test_unknown_objective_algorithm_and_wrong_dimension_are_refused() -> None:
    with pytest.raises(UnknownObjective, match="unknown objective 'nope': registered "
                                               "objectives are ackley, "):
        get_objective("nope")
    with pytest.raises(InvalidSearchSetting, match="unknown algorithm 'de'"):
        build_config("de", get_objective("sphere"), 2, None, 10, 5, 1, 5)
    with pytest.raises(InvalidSearchSetting, match="needs at least 2 dimensions"):
        build_config("ga", get_objective("rosenbrock"), 1, None, 10, 5, 1, 5)
    with pytest.raises(InvalidSearchSetting, match="has exactly 9 dimensions"):
        build_config("ga", get_objective("ridge_cv"), 3, None, 10, 5, 1, 5)


def test_bounds_parse_negative_values_and_one_pair_per_dimension() -> None:
    assert parse_bounds(["-5.12:5.12"]) == [(-5.12, 5.12)]
    assert parse_bounds(["-1e-3:2", "-4:-3,0:1"]) == [(-1e-3, 2.0), (-4.0, -3.0), (0.0, 1.0)]
    with pytest.raises(InvalidBounds, match="--bounds '5': expected LO:HI"):
        parse_bounds(["5"])


def write_small_flights(root: Path, rows: int = 240, seed: int = 11) -> Path:
    """A flights.csv with the columns ridge_cv reads, a few missing cells, and noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(size=rows) * (index + 1)
                          for index, name in enumerate(ridge_cv.FEATURES)})
    frame["distance"] = frame["air_time"] * 8.0 + rng.normal(size=rows)
    frame["arr_delay"] = (3.0 * frame["dep_delay"] - 0.5 * frame["month"]
                          + rng.normal(scale=2.0, size=rows))
    frame.loc[[3, 50], "dep_time"] = np.nan
    frame.loc[7, "arr_delay"] = np.nan
    frame["carrier"] = "UA"
    path = root / ridge_cv.FLIGHTS_CSV
    frame.to_csv(path, index=False, float_format="%.17g")
    return path


def sklearn_cv_error(path: Path, penalty: float, chosen: np.ndarray) -> float:
    frame = pd.read_csv(path).dropna(subset=[*ridge_cv.FEATURES, ridge_cv.TARGET])
    features = frame[list(ridge_cv.FEATURES)].to_numpy()[:, chosen]
    target = frame[ridge_cv.TARGET].to_numpy()
    folds = np.arange(len(target)) % ridge_cv.FOLDS
    errors = []
    for fold in range(ridge_cv.FOLDS):
        train, test = folds != fold, folds == fold
        if chosen.any():
            scaler = StandardScaler().fit(features[train])
            model = Ridge(alpha=penalty).fit(scaler.transform(features[train]), target[train])
            predicted = model.predict(scaler.transform(features[test]))
        else:
            predicted = np.full(test.sum(), target[train].mean())
        errors.append(np.mean((target[test] - predicted) ** 2))
    return float(np.mean(errors))


def test_ridge_cross_validation_error_matches_scikit_learn(tmp_path: Path) -> None:
    path = write_small_flights(tmp_path)
    rng = np.random.default_rng(5)
    candidates = np.column_stack([rng.uniform(-3, 4, 6), rng.random((6, ridge_cv.DIM - 1))])
    candidates[0, 1:] = 0.0

    values = evaluate(get_objective("ridge_cv"), candidates, tmp_path).values

    for candidate, value in zip(candidates, values):
        penalty, chosen = ridge_cv.decode(candidate)
        assert value == pytest.approx(sklearn_cv_error(path, penalty, chosen), rel=1e-9)


def test_ridge_cross_validation_asks_for_the_demo_data_when_it_is_missing(
        tmp_path: Path) -> None:
    objective = get_objective("ridge_cv")
    assert objective.check_data is not None
    with pytest.raises(DatasetNotFound, match="run `lepton demo` once"):
        objective.check_data(tmp_path)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)
