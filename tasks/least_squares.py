"""Least squares by tall-skinny QR (TSQR): per-chunk partials, a stable merge, the solve.

Pure numpy, no Celery: the map task calls :func:`block_partial`, the reduce calls
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

# QR of a few thousand rows stays in cache; one QR over a million rows is memory-bound.
# Measured on 1M x 10: 0.07 s in 4,000-row blocks, 0.23 s in 20,000-row blocks.
SUB_BLOCK_ROWS = 4_000

EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Partial:
    """What one chunk (or several merged chunks) contributes to the fit.

    Columns are the features then the target (k = p + 1). ``means`` (k,) are the column
    means when the model has an intercept (else zeros); ``r_factor`` (k, k) is the R
    factor of the columns minus their means, each scaled by ``2.0 ** -exponents``.
    Centring is what keeps polynomial designs such as Pontius and Filip accurate: the
    intercept no longer competes with large, nearly constant columns.
    """

    rows: int
    means: np.ndarray
    r_factor: np.ndarray
    exponents: np.ndarray
    feature_min: np.ndarray
    feature_max: np.ndarray

    def to_json(self) -> dict:
        """Return a JSON-serialisable dict (floats round-trip exactly through ``repr``)."""
        return {
            "rows": self.rows,
            "means": self.means.tolist(),
            "r_factor": self.r_factor.tolist(),
            "exponents": self.exponents.tolist(),
            "feature_min": self.feature_min.tolist(),
            "feature_max": self.feature_max.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> "Partial":
        """Rebuild a partial from :meth:`to_json` output."""
        return cls(
            rows=int(data["rows"]),
            means=np.asarray(data["means"], dtype=np.float64),
            r_factor=np.asarray(data["r_factor"], dtype=np.float64),
            exponents=np.asarray(data["exponents"], dtype=np.int64),
            feature_min=np.asarray(data["feature_min"], dtype=np.float64),
            feature_max=np.asarray(data["feature_max"], dtype=np.float64),
        )


@dataclass(frozen=True)
class Fit:
    """The solved regression; arrays have one entry per coefficient."""

    coefficients: np.ndarray
    std_errors: np.ndarray
    r_squared: float
    residual_std: float
    condition_number: float
    n_rows: int


def factor_rows(rows: np.ndarray, sub_block_rows: int = SUB_BLOCK_ROWS) -> np.ndarray:
    """Return the (k, k) R factor of ``rows`` (n, k).

    Each sub-block is factored on its own and the stacked R factors once more (a
    two-level TSQR): a sub-block stays in cache, and no large array is copied.
    """
    width = rows.shape[1]
    if rows.shape[0] <= sub_block_rows:
        return _pad_square(np.asarray(np.linalg.qr(rows, mode="r")), width)
    factors = [
        _pad_square(np.asarray(np.linalg.qr(rows[start:start + sub_block_rows], mode="r")),
                    width)
        for start in range(0, rows.shape[0], sub_block_rows)
    ]
    return factor_rows(np.vstack(factors), sub_block_rows)


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
    (the caller drops incomplete rows). With ``intercept`` the columns are centred.
    """
    columns = np.empty((features.shape[0], features.shape[1] + 1), order="F")
    columns[:, :-1] = features
    columns[:, -1] = target
    return block_partial(columns, intercept)


def block_partial(columns: np.ndarray, intercept: bool) -> Partial:
    """Compute the partial of a (n, p + 1) float64 block whose last column is the target.

    The block is centred and scaled in place (it is the caller's working copy): chunks
    hold a million rows, and every full-size temporary costs as much as the QR itself.
    Column (Fortran) order makes the per-column reductions contiguous.
    """
    rows, width = columns.shape
    if rows:
        feature_min, feature_max = columns[:, :-1].min(axis=0), columns[:, :-1].max(axis=0)
    else:
        feature_min = np.full(width - 1, np.inf)
        feature_max = np.full(width - 1, -np.inf)

    means = np.zeros(width)
    if intercept and rows:
        means = columns.mean(axis=0)
        # A second pass removes the rounding error of the first mean.
        means += (columns - means).mean(axis=0)
        columns -= means

    exponents = column_exponents(columns)
    columns *= np.ldexp(1.0, -exponents)  # exact: powers of two
    r_factor = factor_rows(columns)
    return Partial(rows, means, r_factor, exponents, feature_min, feature_max)


def merge_partials(partials: list[Partial]) -> Partial:
    """Merge partials into one, as if their chunks had been a single chunk.

    The scatter of the union is the sum of the chunks' scatters plus
    ``n_i (m_i - m)(m_i - m)^T`` for each chunk, so the merged R factor is the R factor
    of the chunks' R factors stacked on the rows ``sqrt(n_i) (m_i - m)``. Shifting R
    factors to a common power-of-two scale is exact.
    """
    filled = [partial for partial in partials if partial.rows] or partials[:1]
    rows = sum(partial.rows for partial in filled)
    weights = np.array([partial.rows for partial in filled], dtype=np.float64)
    all_means = np.array([partial.means for partial in filled])
    means = weights @ all_means / max(rows, 1)
    means += weights @ (all_means - means) / max(rows, 1)

    between = np.sqrt(weights)[:, None] * (all_means - means)
    exponents = np.max([partial.exponents for partial in filled]
                       + [column_exponents(between)], axis=0)
    stacked = np.vstack(
        [np.ldexp(partial.r_factor, partial.exponents - exponents) for partial in filled]
        + [np.ldexp(between, -exponents)]
    )
    r_factor = factor_rows(stacked)

    feature_min = np.min([partial.feature_min for partial in partials], axis=0)
    feature_max = np.max([partial.feature_max for partial in partials], axis=0)
    return Partial(rows, means, r_factor, exponents, feature_min, feature_max)


def design_r_factor(merged: Partial, intercept: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return the R factor of ``[1 | features | target]`` (or without the 1) and exponents.

    With an intercept, R is rebuilt from the centred factor R_c and the means m:
    ``[[sqrt(n), sqrt(n) m], [0, R_c]]`` has exactly the same ``R^T R`` as the raw design.
    """
    if not intercept:
        return merged.r_factor, merged.exponents
    width = merged.r_factor.shape[0] + 1
    full = np.zeros((width, width))
    root_rows = np.sqrt(merged.rows)
    full[0, 0] = root_rows
    full[0, 1:] = root_rows * np.ldexp(merged.means, -merged.exponents)
    full[1:, 1:] = merged.r_factor
    return full, np.concatenate([[0], merged.exponents])


def solve(merged: Partial, feature_names: list[str], target_name: str,
          intercept: bool) -> Fit:
    """Solve the merged problem and compute standard errors, R² and residual std.

    Raises a :class:`FitError` subclass naming the column when the fit is not defined.
    """
    names = (["intercept"] if intercept else []) + list(feature_names)
    n_coef = len(names)
    r_full, exponents = design_r_factor(merged, intercept)
    _check_rows_and_constants(merged, r_full, feature_names, target_name, n_coef, intercept)

    r_design = r_full[:n_coef, :n_coef]
    _check_collinearity(r_full, names, merged.rows)

    scale = np.ldexp(1.0, exponents)
    scaled_coef = _solve_upper(r_design, r_full[:n_coef, n_coef])
    coefficients = scaled_coef * scale[n_coef] / scale[:n_coef]

    # Norms stay in the scaled domain until the end: squaring a column of 1e200 overflows.
    residual_norm = _residual_norm(r_full, n_coef)
    sigma = float(residual_norm / np.sqrt(merged.rows - n_coef) * scale[n_coef])
    inverse = _solve_upper(r_design, np.eye(n_coef))
    std_errors = sigma * np.sqrt(np.sum(inverse * inverse, axis=1)) / scale[:n_coef]

    r_squared = 1.0 - (residual_norm / _total_norm(r_full, n_coef, intercept)) ** 2
    return Fit(coefficients, std_errors, float(r_squared), sigma,
               _condition_number(r_design), merged.rows)


def _total_norm(r_full: np.ndarray, n_coef: int, intercept: bool) -> float:
    """Square root of the total sum of squares, in the target's scaled units."""
    # Centred with an intercept (row 0 holds the mean), uncentred without, as NIST does.
    first_row = 1 if intercept else 0
    return float(np.linalg.norm(r_full[first_row:, n_coef]))


def _check_rows_and_constants(merged: Partial, r_full: np.ndarray, feature_names: list[str],
                              target_name: str, n_coef: int, intercept: bool) -> None:
    if merged.rows == 0:
        raise NoRowsLeft("no rows left: every row has a missing value in a used column")
    if merged.rows <= n_coef:
        raise TooFewRows(
            f"{merged.rows} usable rows for {n_coef} coefficients: "
            "need more rows than coefficients to estimate standard errors"
        )
    if not np.any(r_full[1 if intercept else 0:, n_coef]):
        raise ConstantColumn(f"target '{target_name}' is constant: R² is undefined")
    if intercept:
        for name, low, high in zip(feature_names, merged.feature_min, merged.feature_max):
            if low == high:
                raise ConstantColumn(
                    f"feature '{name}' is constant ({float(low):g}) and duplicates the intercept"
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


def _residual_norm(r_factor: np.ndarray, n_coef: int) -> float:
    """Square root of the residual sum of squares, in the target's scaled units."""
    residual = abs(float(r_factor[n_coef, n_coef]))
    target_norm = float(np.linalg.norm(r_factor[:, n_coef]))
    # A residual at rounding level of the target is an exact fit, not noise.
    if residual <= EPS * (n_coef + 1) * target_norm:
        return 0.0
    return residual


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
