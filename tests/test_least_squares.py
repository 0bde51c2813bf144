"""The numerical kernel on its own: merge invariance, completeness, degenerate designs."""

import numpy as np
import pytest

from tasks.errors import CollinearFeature, ConstantColumn, JobIncomplete
from tasks.least_squares import Partial, chunk_partial, merge_partials, solve
from tasks.regression import check_complete


def partials_of(features: np.ndarray, target: np.ndarray, cuts: list[int],
                intercept: bool = True) -> list[Partial]:
    bounds = [0, *cuts, len(target)]
    return [chunk_partial(features[a:b], target[a:b], intercept)
            for a, b in zip(bounds[:-1], bounds[1:])]


def test_merging_in_any_grouping_gives_the_same_fit() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(500, 3)) * [1.0, 1e4, 1e-3] + [0.0, 5e6, 1.0]
    target = features @ [2.0, -3e-4, 50.0] + rng.normal(size=500)
    names = ["a", "b", "c"]

    whole = solve(merge_partials(partials_of(features, target, [])), names, "y", True)
    pieces = partials_of(features, target, [1, 2, 99, 250, 251, 400])
    flat = solve(merge_partials(pieces), names, "y", True)
    nested = solve(merge_partials([merge_partials(pieces[:3]), merge_partials(pieces[3:])]),
                   names, "y", True)

    for fit in (flat, nested):
        np.testing.assert_allclose(fit.coefficients, whole.coefficients, rtol=1e-11)
        np.testing.assert_allclose(fit.std_errors, whole.std_errors, rtol=1e-11)
        assert fit.r_squared == pytest.approx(whole.r_squared, rel=1e-13)


def test_partials_survive_a_json_round_trip_exactly() -> None:
    rng = np.random.default_rng(2)
    partial = chunk_partial(rng.normal(size=(40, 2)), rng.normal(size=40), True)

    again = Partial.from_json(partial.to_json())

    np.testing.assert_array_equal(again.r_factor, partial.r_factor)
    np.testing.assert_array_equal(again.means, partial.means)


def test_empty_chunks_change_nothing() -> None:
    rng = np.random.default_rng(3)
    features, target = rng.normal(size=(30, 2)), rng.normal(size=30)
    empty = chunk_partial(np.empty((0, 2)), np.empty(0), True)

    with_empty = solve(merge_partials([empty, *partials_of(features, target, [10]), empty]),
                       ["a", "b"], "y", True)
    without = solve(merge_partials(partials_of(features, target, [10])), ["a", "b"], "y", True)

    np.testing.assert_allclose(with_empty.coefficients, without.coefficients, rtol=1e-14)


def test_huge_and_tiny_columns_neither_overflow_nor_underflow() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(size=(200, 2))
    features = base * [1e200, 1e-200]
    target = base @ [3.0, -1.0] + 0.01 * rng.normal(size=200)

    fit = solve(merge_partials(partials_of(features, target, [50, 120])), ["a", "b"], "y",
                False)

    np.testing.assert_allclose(fit.coefficients * [1e200, 1e-200], [3.0, -1.0], rtol=1e-3)
    assert np.all(np.isfinite(fit.std_errors))


def test_constant_target_is_refused() -> None:
    features = np.arange(10.0)[:, None]

    with pytest.raises(ConstantColumn, match="target 'y'"):
        solve(merge_partials(partials_of(features, np.full(10, 4.0), [5])), ["x"], "y", True)


def test_zero_feature_without_intercept_is_named() -> None:
    features = np.column_stack([np.arange(10.0), np.zeros(10)])

    with pytest.raises((ConstantColumn, CollinearFeature), match="'z'"):
        solve(merge_partials(partials_of(features, np.arange(10.0) * 2 + 1, [3])),
              ["x", "z"], "y", False)


def test_reduce_refuses_missing_and_duplicated_chunks() -> None:
    job = {"job_id": "j", "n_chunks": 3, "n_rows": 30}
    chunk = {"rows_read": 10}

    with pytest.raises(JobIncomplete, match=r"missing \[2\]"):
        check_complete([{**chunk, "chunk": 0}, {**chunk, "chunk": 1}], job)
    with pytest.raises(JobIncomplete, match=r"duplicated \[1\]"):
        check_complete([{**chunk, "chunk": index} for index in (0, 1, 1, 2)], job)
    with pytest.raises(JobIncomplete, match="read 29 rows but 30"):
        check_complete([{**chunk, "chunk": 0}, {**chunk, "chunk": 1},
                        {"rows_read": 9, "chunk": 2}], job)
    check_complete([{**chunk, "chunk": index} for index in (2, 0, 1)], job)


def test_huge_values_give_finite_errors_and_r_squared() -> None:
    rng = np.random.default_rng(6)
    features = rng.normal(size=(300, 2))
    target = features @ [1.0, -2.0] + rng.normal(size=300)
    small = solve(merge_partials(partials_of(features, target, [100])), ["a", "b"], "y",
                  True)

    huge = solve(merge_partials(partials_of(features * 1e200, target * 1e200, [100])),
                 ["a", "b"], "y", True)

    assert huge.r_squared == pytest.approx(small.r_squared, rel=1e-12)
    np.testing.assert_allclose(huge.std_errors / [1e200, 1.0, 1.0], small.std_errors,
                               rtol=1e-10)
    assert huge.residual_std == pytest.approx(small.residual_std * 1e200, rel=1e-12)
