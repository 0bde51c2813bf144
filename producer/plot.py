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
    """Draw each coefficient with its 95% interval, and, given ``sample``
    ((n, p + 1) float64: features then target), predicted against observed values.
    """
    panels = 2 if sample is not None and len(sample) else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)

    coefficients = np.asarray(result["coefficients"])
    half_width = Z_95 * np.asarray(result["std_errors"])
    positions = np.arange(len(coefficients))
    left = axes[0, 0]
    left.errorbar(coefficients, positions, xerr=half_width, fmt="o", capsize=4)
    left.axvline(0.0, color="grey", linewidth=0.8)
    left.set_yticks(positions, result["features"])
    left.invert_yaxis()
    left.set_xlabel(f"coefficient on {result['target']} (95% interval)")
    left.set_title(f"R² = {result['r_squared']:.4f}, {result['n_rows']:,} rows")

    if panels == 2 and sample is not None:
        intercept = result["features"][0] == "intercept"
        design = np.column_stack([np.ones(len(sample)), sample[:, :-1]]) if intercept \
            else sample[:, :-1]
        predicted = design @ coefficients
        right = axes[0, 1]
        right.scatter(sample[:, -1], predicted, s=4, alpha=0.3)
        low, high = np.percentile(np.concatenate([sample[:, -1], predicted]), [0.5, 99.5])
        right.plot([low, high], [low, high], color="grey", linewidth=0.8)
        right.set_xlabel(f"observed {result['target']}")
        right.set_ylabel(f"predicted {result['target']}")
        right.set_title(f"{len(sample):,} sampled rows")

    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path
