"""The convergence plot of an optimisation result: fitness against generation."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_convergence(result: dict[str, Any], out_path: Path) -> Path:
    """Draw the best fitness so far, and each generation's best and mean, per generation.

    The fitness axis is logarithmic when every plotted value is positive, and
    symmetric-logarithmic otherwise (Schwefel's function, for one, can dip below 0).
    """
    best = _as_array(result["history"]["best"])
    mean = _as_array(result["history"]["mean"])
    generations = np.arange(1, len(best) + 1)
    best_so_far = np.fmin.accumulate(best) if len(best) else best

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(generations, mean, color="tab:grey", linewidth=1.0, label="generation mean")
    axes.plot(generations, best, color="tab:blue", linewidth=0.8, alpha=0.6,
              label="generation best")
    axes.plot(generations, best_so_far, color="tab:red", linewidth=1.8, label="best so far")
    _scale_axis(axes, np.concatenate([mean, best]))
    axes.set_xlabel("generation")
    axes.set_ylabel(f"{result['objective']} (lower is better)")
    best_f = result["best_f"]
    best_text = "none valid" if best_f is None else f"{best_f:.4g}"
    axes.set_title(f"{result['algorithm'].upper()} on {result['objective']} "
                   f"({result['dim']}-D, population {result['population']}): best {best_text}")
    axes.legend(loc="upper right")
    axes.grid(True, which="both", linewidth=0.3)

    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=110)
    plt.close(figure)
    return out_path


def _as_array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if value is None else value for value in values], dtype=float)


def _scale_axis(axes: Any, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return
    if finite.min() > 0:
        axes.set_yscale("log")
        return
    nonzero = np.abs(finite[finite != 0])
    axes.set_yscale("symlog", linthresh=float(nonzero.min()) if len(nonzero) else 1.0)
