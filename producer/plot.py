"""Pictures of a regression result: coefficient intervals and predicted against observed."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Normal quantile for a two-sided 95% interval; rows are many, so t is close to z.
Z_95 = 1.959963984540054


def plot_regression(result: dict[str, Any], out_path: Path,
                    sample: np.ndarray | None = None) -> Path:
    """Draw each coefficient with its 95% interval on its own scale, and, given ``sample``
    ((n, p + 1) float64: features then target), predicted against observed values.
    """
    names = result["features"]
    coefficients = np.asarray(result["coefficients"])
    half_widths = Z_95 * np.asarray(result["std_errors"])
    with_sample = sample is not None and len(sample) > 0
    figure = plt.figure(figsize=(11 if with_sample else 5.5, max(3.5, 1.1 * len(names))))
    grid = figure.add_gridspec(len(names), 2 if with_sample else 1)

    for row, (name, value, half_width) in enumerate(zip(names, coefficients, half_widths)):
        axis = figure.add_subplot(grid[row, 0])
        _draw_interval(axis, name, float(value), float(half_width))
    figure.axes[0].set_title(f"coefficients on {result['target']} with 95% intervals\n"
                             f"R² = {result['r_squared']:.4f}, {result['n_rows']:,} rows")

    if with_sample and sample is not None:
        _draw_predicted_against_observed(figure.add_subplot(grid[:, 1]), result,
                                         coefficients, sample)
    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path


def _draw_interval(axis: Any, name: str, value: float, half_width: float) -> None:
    # Each coefficient gets its own axis: their scales differ by orders of magnitude.
    axis.errorbar([value], [0], xerr=[half_width], fmt="o", capsize=5)
    span = max(half_width * 3, abs(value) * 1e-3, 1e-12)
    axis.set_xlim(value - span, value + span)
    axis.set_yticks([0], [name])
    axis.annotate(f"{value:.6g} ± {half_width:.2g}", (0.02, 0.7),
                  xycoords="axes fraction", fontsize=8)


def _draw_predicted_against_observed(axis: Any, result: dict[str, Any],
                                     coefficients: np.ndarray, sample: np.ndarray) -> None:
    intercept = result["features"][0] == "intercept"
    design = sample[:, :-1]
    if intercept:
        design = np.column_stack([np.ones(len(sample)), design])
    predicted = design @ coefficients
    axis.scatter(sample[:, -1], predicted, s=4, alpha=0.3)
    low, high = np.percentile(np.concatenate([sample[:, -1], predicted]), [0.5, 99.5])
    axis.plot([low, high], [low, high], color="grey", linewidth=0.8)
    axis.set_xlabel(f"observed {result['target']}")
    axis.set_ylabel(f"predicted {result['target']}")
    axis.set_title(f"{len(sample):,} sampled rows")
