"""Distributed regression results equal independent references, whatever the chunking."""

from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

from producer.client import Client
from tests.datasets import column_names, synthetic_frame, write_frame

ROWS = 300


def fit(client: Client, path: Path, target: str, features: list[str] | None,
        chunk_rows: int | None, intercept: bool = True) -> dict:
    job_id = client.submit_regression(path, target, features, intercept, chunk_rows)
    return client.wait(job_id, progress=False, timeout_s=120)


def expected_chunks(suffix: str, chunk_rows: int, row_group_rows: int = 64) -> int:
    """Chunks never span Parquet row groups; other formats cut rows evenly."""
    if suffix != ".parquet":
        return -(-ROWS // chunk_rows)
    groups = [min(row_group_rows, ROWS - start) for start in range(0, ROWS, row_group_rows)]
    return sum(-(-group // chunk_rows) for group in groups)


@pytest.fixture(scope="module")
def frame() -> "object":
    return synthetic_frame(np.random.default_rng(20261204), ROWS, features=3, missing=12)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy"])
@pytest.mark.parametrize("chunk_rows", [1, 7, 64, ROWS])
def test_coefficients_match_lstsq_and_errors_match_statsmodels(
        client: Client, data_root: Path, frame, suffix: str, chunk_rows: int) -> None:
    path = write_frame(frame, data_root / f"synthetic{suffix}")
    features, target = column_names(frame, path)

    result = fit(client, path, target, features, chunk_rows)

    complete = frame.dropna().to_numpy()
    design = np.column_stack([np.ones(len(complete)), complete[:, :-1]])
    expected, *_ = np.linalg.lstsq(design, complete[:, -1], rcond=None)
    reference = sm.OLS(complete[:, -1], design).fit()
    np.testing.assert_allclose(result["coefficients"], expected, rtol=1e-9)
    np.testing.assert_allclose(result["std_errors"], reference.bse, rtol=1e-9)
    assert result["r_squared"] == pytest.approx(reference.rsquared, rel=1e-12)
    assert result["residual_std"] == pytest.approx(np.sqrt(reference.scale), rel=1e-12)
    assert result["n_rows"] == len(complete)
    assert result["n_dropped"] == ROWS - len(complete)
    assert result["n_chunks"] == expected_chunks(suffix, chunk_rows)
    assert result["features"] == ["intercept", *features]


def test_result_does_not_depend_on_chunking_beyond_rounding(
        client: Client, data_root: Path, frame) -> None:
    path = write_frame(frame, data_root / "chunking.csv")
    results = [fit(client, path, "y", None, chunk_rows) for chunk_rows in (1, 13, ROWS)]

    for other in results[1:]:
        np.testing.assert_allclose(other["coefficients"], results[0]["coefficients"],
                                   rtol=1e-12)
        np.testing.assert_allclose(other["std_errors"], results[0]["std_errors"], rtol=1e-12)


def test_fit_without_intercept_matches_statsmodels(client: Client, data_root: Path,
                                                   frame) -> None:
    path = write_frame(frame, data_root / "no-intercept.parquet")

    result = fit(client, path, "y", ["x0", "x1"], 10, intercept=False)

    complete = frame[["x0", "x1", "y"]].dropna().to_numpy()
    reference = sm.OLS(complete[:, -1], complete[:, :-1]).fit()
    assert result["features"] == ["x0", "x1"]
    np.testing.assert_allclose(result["coefficients"], reference.params, rtol=1e-9)
    np.testing.assert_allclose(result["std_errors"], reference.bse, rtol=1e-9)
    assert result["r_squared"] == pytest.approx(reference.rsquared, rel=1e-12)


def test_perfect_fit_gives_exact_slope_and_zero_errors_without_warnings(
        client: Client, data_root: Path) -> None:
    path = data_root / "perfect.csv"
    path.write_text("x,y\n" + "".join(f"{x},{2 * x}\n" for x in range(1, 11)))

    with np.errstate(all="raise"):
        result = fit(client, path, "y", ["x"], 3)

    assert result["coefficients"][1] == pytest.approx(2.0, abs=1e-14)
    assert result["coefficients"][0] == pytest.approx(0.0, abs=1e-13)
    assert result["r_squared"] == 1.0
    assert result["std_errors"] == [0.0, 0.0]
    assert result["residual_std"] == 0.0


def test_result_is_written_as_json_and_fetchable_by_id(client: Client, data_root: Path,
                                                       frame) -> None:
    import json

    path = write_frame(frame, data_root / "stored.csv")
    result = fit(client, path, "y", ["x0"], 50)

    written = json.loads((client.settings.results_dir / f"{result['job_id']}.json").read_text())
    assert written == result
    assert client.result(result["job_id"]) == result
    for key in ("job_id", "kind", "source", "target", "features", "coefficients",
                "std_errors", "r_squared", "residual_std", "n_rows", "n_dropped",
                "n_chunks", "elapsed_s", "condition_number"):
        assert key in written
    assert written["kind"] == "regression"
    assert written["source"] == str(path)
