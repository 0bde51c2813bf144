"""Least squares by tall-skinny QR (TSQR): per-chunk partials, a stable merge, the solve.

Pure numpy, no Celery: the map task calls :func:`chunk_partial`, the reduce calls
:func:`merge_partials` and :func:`solve`.

A partial is the upper-triangular factor R of the chunk's augmented matrix
``[design | target]`` after scaling every column by a power of two. Power-of-two
scaling is exact in floating point, so it changes no digit of the result; it keeps
squares of large columns from overflowing and lets partials from chunks with very
different magnitudes be brought to one scale without rounding. Merging stacks the R
factors and factors them again, which is backward stable, unlike summing ``X.T @ X``
(the normal equations square the condition number and lose Filip entirely).
"""

from dataclasses import dataclass

import numpy as np

from tasks.errors import CollinearFeature, ConstantColumn, NoRowsLeft, TooFewRows

# QR of ~20k-row blocks stays in cache; one QR over a million rows is memory-bound.
SUB_BLOCK_ROWS = 20_000

EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Partial:
    """What one chunk contributes to the fit.

    ``r_factor`` is (k, k) float64 with k = number of design columns + 1 (target last),
    computed on columns scaled by ``2.0 ** -exponents``. ``target_mean`` and
    ``target_m2`` (sum of squared deviations) feed the centred total sum of squares.
    ``feature_min``/``feature_max`` (length k - 1) reveal constant features.
    """

    rows: int
    r_factor: np.ndarray
    exponents: np.ndarray
    target_mean: float
    target_m2: float
    feature_min: np.ndarray
    feature_max: np.ndarray

    def to_json(self) -> dict:
        """Return a JSON-serialisable dict (floats round-trip exactly through ``repr``)."""
        return {
            "rows": self.rows,
            "r_factor": self.r_factor.tolist(),
            "exponents": self.exponents.tolist(),
            "target_mean": self.target_mean,
            "target_m2": self.target_m2,
            "feature_min": self.feature_min.tolist(),
            "feature_max": self.feature_max.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Partial":
        """Rebuild a partial from :meth:`to_json` output."""
        return cls(
            rows=int(data["rows"]),
            r_factor=np.asarray(data["r_factor"], dtype=np.float64),
            exponents=np.asarray(data["exponents"], dtype=np.int64),
            target_mean=float(data["target_mean"]),
            target_m2=float(data["target_m2"]),
            feature_min=np.asarray(data["feature_min"], dtype=np.float64),
            feature_max=np.asarray(data["feature_max"], dtype=np.float64),
        )


@dataclass(frozen=True)
class Fit:
    """The solved regression; arrays have one entry per design column."""

    coefficients: np.ndarray
    std_errors: np.ndarray
    r_squared: float
    residual_std: float
    condition_number: float
    n_rows: int


def factor_rows(rows: np.ndarray, sub_block_rows: int = SUB_BLOCK_ROWS) -> np.ndarray:
    """Return the (k, k) R factor of ``rows`` (n, k), factoring in sub-blocks."""
    width = rows.shape[1]
    r_factor = np.zeros((0, width))
    for start in range(0, rows.shape[0], sub_block_rows):
        block = np.vstack([r_factor, rows[start:start + sub_block_rows]])
        r_factor = np.linalg.qr(block, mode="r")
    return _pad_square(r_factor, width)


def _pad_square(r_factor: np.ndarray, width: int) -> np.ndarray:
    # QR of fewer rows than columns returns a short R; zero rows complete it exactly.
    square = np.zeros((width, width))
    square[: r_factor.shape[0]] = r_factor[:width]
    return square


def column_exponents(rows: np.ndarray) -> np.ndarray:
    """Return the binary exponent of each column's largest magnitude (0 for a zero column)."""
    if rows.shape[0] == 0:
        return np.zeros(rows.shape[1], dtype=np.int64)
    _, exponents = np.frexp(np.max(np.abs(rows), axis=0))
    return exponents.astype(np.int64)


def chunk_partial(features: np.ndarray, target: np.ndarray, intercept: bool) -> Partial:
    """Compute the partial of one chunk.

    ``features`` is (n, p) float64 and ``target`` (n,) float64, both free of NaN
    (the caller drops incomplete rows). With ``intercept`` a column of ones comes first.
    """
    rows = features.shape[0]
    design = np.hstack([np.ones((rows, 1)), features]) if intercept else features
    augmented = np.column_stack([design, target])

    exponents = column_exponents(augmented)
    scaled = np.ldexp(augmented, -exponents)
    r_factor = factor_rows(scaled)

    target_mean = float(target.mean()) if rows else 0.0
    target_m2 = float(np.sum((target - target_mean) ** 2)) if rows else 0.0
    if rows:
        feature_min, feature_max = features.min(axis=0), features.max(axis=0)
    else:
        feature_min = np.full(features.shape[1], np.inf)
        feature_max = np.full(features.shape[1], -np.inf)
    return Partial(rows, r_factor, exponents, target_mean, target_m2, feature_min, feature_max)


def merge_partials(partials: list[Partial]) -> Partial:
    """Merge partials into one, as if the chunks had been one chunk.

    The R factors are brought to the largest exponent per column (an exact shift),
    stacked and factored again; the target moments merge by Chan's pairwise update.
    """
    exponents = np.max([partial.exponents for partial in partials], axis=0)
    stacked = np.vstack([
        np.ldexp(partial.r_factor, partial.exponents - exponents) for partial in partials
    ])
    r_factor = factor_rows(stacked)

    rows, mean, m2 = 0, 0.0, 0.0
    for partial in partials:
        if partial.rows == 0:
            continue
        total = rows + partial.rows
        delta = partial.target_mean - mean
        mean += delta * partial.rows / total
        m2 += partial.target_m2 + delta * delta * rows * partial.rows / total
        rows = total

    feature_min = np.min([partial.feature_min for partial in partials], axis=0)
    feature_max = np.max([partial.feature_max for partial in partials], axis=0)
    return Partial(rows, r_factor, exponents, mean, m2, feature_min, feature_max)


def solve(merged: Partial, feature_names: list[str], target_name: str,
          intercept: bool) -> Fit:
    """Solve the merged problem and compute standard errors, R² and residual std.

    Raises a :class:`FitError` subclass naming the column when the fit is not defined.
    """
    names = (["intercept"] if intercept else []) + list(feature_names)
    n_coef = len(names)
    _check_rows_and_constants(merged, feature_names, target_name, n_coef, intercept)

    r_design = merged.r_factor[:n_coef, :n_coef]
    _check_collinearity(merged.r_factor, names, merged.rows)

    qt_target = merged.r_factor[:n_coef, n_coef]
    scaled_coef = _solve_upper(r_design, qt_target)
    scale = np.ldexp(1.0, merged.exponents)
    coefficients = scaled_coef * scale[n_coef] / scale[:n_coef]

    rss = _residual_sum_of_squares(merged.r_factor, n_coef) * scale[n_coef] ** 2
    sigma = float(np.sqrt(rss / (merged.rows - n_coef)))
    inverse = _solve_upper(r_design, np.eye(n_coef))
    std_errors = sigma * np.sqrt(np.sum(inverse * inverse, axis=1)) / scale[:n_coef]

    if intercept:
        total = merged.target_m2
    else:
        total = float(np.sum(merged.r_factor[:, n_coef] ** 2)) * scale[n_coef] ** 2
    r_squared = 1.0 - rss / total
    return Fit(coefficients, std_errors, float(r_squared), sigma,
               _condition_number(r_design), merged.rows)


def _check_rows_and_constants(merged: Partial, feature_names: list[str], target_name: str,
                              n_coef: int, intercept: bool) -> None:
    if merged.rows == 0:
        raise NoRowsLeft("no rows left: every row has a missing value in a used column")
    if merged.rows <= n_coef:
        raise TooFewRows(
            f"{merged.rows} usable rows for {n_coef} coefficients: "
            "need more rows than coefficients to estimate standard errors"
        )
    if merged.target_m2 == 0.0:
        raise ConstantColumn(f"target '{target_name}' is constant: R² is undefined")
    if intercept:
        for name, low, high in zip(feature_names, merged.feature_min, merged.feature_max):
            if low == high:
                raise ConstantColumn(
                    f"feature '{name}' is constant ({low!r}) and duplicates the intercept"
                )


def _check_collinearity(r_factor: np.ndarray, names: list[str], rows: int) -> None:
    # Column j is dependent when what remains after projecting out the earlier columns
    # is at rounding level of the column itself; ill-conditioned columns stay above it.
    tolerance = EPS * max(rows, len(names)) * 4
    for column, name in enumerate(names):
        column_norm = np.linalg.norm(r_factor[: column + 1, column])
        if column_norm == 0.0:
            raise ConstantColumn(f"feature '{name}' is all zeros")
        if abs(r_factor[column, column]) <= tolerance * column_norm:
            earlier = ", ".join(names[:column]) or "nothing"
            raise CollinearFeature(
                f"feature '{name}' is an exact linear combination of: {earlier}"
            )


def _residual_sum_of_squares(r_factor: np.ndarray, n_coef: int) -> float:
    residual = float(r_factor[n_coef, n_coef])
    target_norm = float(np.linalg.norm(r_factor[:, n_coef]))
    # A residual at rounding level of the target is an exact fit, not noise.
    if abs(residual) <= EPS * (n_coef + 1) * target_norm:
        return 0.0
    return residual * residual


def _solve_upper(upper: np.ndarray, right: np.ndarray) -> np.ndarray:
    # Back substitution without pivoting or rank cut-off, so ill-conditioned but
    # full-rank problems such as Filip keep their digits.
    size = upper.shape[0]
    solution = np.array(right, dtype=np.float64, copy=True)
    for row in range(size - 1, -1, -1):
        if row + 1 < size:
            solution[row] -= upper[row, row + 1:] @ solution[row + 1:]
        solution[row] /= upper[row, row]
    return solution


def _condition_number(r_design: np.ndarray) -> float:
    """2-norm condition number of the design after scaling each column to unit length."""
    column_norms = np.linalg.norm(r_design, axis=0)
    return float(np.linalg.cond(r_design / column_norms))
