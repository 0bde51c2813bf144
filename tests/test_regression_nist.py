"""NIST StRD linear regression datasets keep their certified digits through the cluster.

For each dataset and chunk size, every coefficient and standard error must keep at least
as many correct digits as numpy ``lstsq`` reaches on the whole data with each column
scaled to unit length, minus one.
"""

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from producer.client import Client

# A copy of the public-domain NIST StRD files, so the suite runs from any clone.
NIST_ROOT = Path(__file__).resolve().parent / "data" / "nist-strd"
CERTIFIED = json.loads((NIST_ROOT / "certified.json").read_text())["linear"]
POLYNOMIAL = {"Pontius", "Filip", "Wampler1", "Wampler2", "Wampler3", "Wampler4",
              "Wampler5"}
# Certified values are printed to 15 significant digits, so their own rounding limits
# measurable agreement to about 14 digits; a reference that matches further is luck.
MAX_DIGITS = 14.0


def load_design(name: str) -> tuple[np.ndarray, np.ndarray, list[str], bool]:
    """Return (features (n, p), target (n,), feature names, intercept) for a dataset."""
    spec = CERTIFIED[name]
    lines = (NIST_ROOT / spec["file"]).read_bytes().decode().split("\r\n")
    first, last = spec["data_lines"]
    data = np.array([[float(cell) for cell in line.split()] for line in lines[first - 1:last]])
    target = data[:, 0]
    if name in POLYNOMIAL:
        x = data[:, 1]
        features = np.column_stack([x ** power for power in range(1, spec["n_parameters"])])
        names = [f"x{power}" for power in range(1, spec["n_parameters"])]
    else:
        features = data[:, 1:]
        names = spec["data_columns"][1:]
    return features, target, names, not name.startswith("NoInt")


def certified(name: str, field: str) -> np.ndarray:
    parameters = CERTIFIED[name]["parameters"]
    return np.array([float(Decimal(parameters[key][field])) for key in parameters])


def correct_digits(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """-log10 relative error, capped; absolute when the certified value is zero."""
    estimate = np.asarray(estimate, dtype=np.float64)
    with np.errstate(divide="ignore"):
        error = np.where(truth == 0.0, np.abs(estimate),
                         np.abs(estimate - truth) / np.abs(np.where(truth == 0, 1, truth)))
        return np.minimum(MAX_DIGITS, -np.log10(error))


def scaled_lstsq(features: np.ndarray, target: np.ndarray, intercept: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The reference: numpy lstsq on unit-length columns, with its standard errors."""
    design = np.column_stack([np.ones(len(target)), features]) if intercept else features
    norms = np.linalg.norm(design, axis=0)
    scaled = design / norms
    solution, *_ = np.linalg.lstsq(scaled, target, rcond=None)
    residual = target - scaled @ solution
    sigma2 = residual @ residual / (len(target) - design.shape[1])
    _, singular, right = np.linalg.svd(scaled, full_matrices=False)
    covariance = (right.T / singular**2) @ right
    return solution / norms, np.sqrt(sigma2 * np.diag(covariance)) / norms


def write_csv(path: Path, features: np.ndarray, target: np.ndarray, names: list[str]) -> None:
    rows = [",".join(repr(float(value)) for value in (*row, y))
            for row, y in zip(features, target)]
    path.write_text(",".join([*names, "y"]) + "\n" + "\n".join(rows) + "\n")


def test_nist_files_are_the_published_ones() -> None:
    for name, spec in CERTIFIED.items():
        digest = hashlib.sha256((NIST_ROOT / spec["file"]).read_bytes()).hexdigest()
        assert digest == spec["sha256"], name


@pytest.mark.parametrize("chunk_rows", [1, 7, None])
@pytest.mark.parametrize("name", list(CERTIFIED))
def test_nist_dataset_keeps_as_many_digits_as_scaled_lstsq(
        client: Client, data_root: Path, name: str, chunk_rows: int | None) -> None:
    features, target, names, intercept = load_design(name)
    path = data_root / f"nist-{name}.csv"
    write_csv(path, features, target, names)
    whole = chunk_rows or len(target)

    job_id = client.submit_regression(path, "y", names, intercept, whole)
    result = client.wait(job_id, progress=False, timeout_s=120)

    reference_coef, reference_se = scaled_lstsq(features, target, intercept)
    for field, ours, reference in (("estimate", result["coefficients"], reference_coef),
                                   ("std_dev", result["std_errors"], reference_se)):
        truth = certified(name, field)
        floor = correct_digits(reference, truth) - 1.0
        digits = correct_digits(ours, truth)
        assert np.all(digits >= floor), f"{field}: digits {digits} below {floor}"
    assert result["r_squared"] == pytest.approx(float(CERTIFIED[name]["r_squared"]),
                                                rel=1e-6)
    assert result["residual_std"] == pytest.approx(
        float(CERTIFIED[name]["residual_std_dev"]), rel=1e-6, abs=1e-12)
    assert result["condition_number"] >= 1.0
