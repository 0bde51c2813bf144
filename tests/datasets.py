"""Writers for test datasets in every supported format, with a seeded generator."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def synthetic_frame(rng: np.random.Generator, rows: int, features: int = 3,
                    missing: int = 0) -> pd.DataFrame:
    """Return ``rows`` rows of features x0.. and target y = X @ beta + noise.

    ``missing`` cells, spread over random rows and columns, are set to NaN.
    """
    values = rng.normal(size=(rows, features)) * np.logspace(0, 3, features)
    beta = rng.normal(size=features)
    target = 1.5 + values @ beta + rng.normal(scale=0.5, size=rows)
    frame = pd.DataFrame(values, columns=[f"x{index}" for index in range(features)])
    frame["y"] = target
    for _ in range(missing):
        frame.iat[int(rng.integers(rows)), int(rng.integers(features + 1))] = np.nan
    return frame


def write_frame(frame: pd.DataFrame, path: Path, row_group_rows: int = 64) -> Path:
    """Write ``frame`` as CSV, Parquet (small row groups) or NPY, by suffix."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False, float_format="%.17g")
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                       row_group_size=row_group_rows)
    else:
        np.save(path, frame.to_numpy(dtype=np.float64))
    return path


def column_names(frame: pd.DataFrame, path: Path) -> tuple[list[str], str]:
    """Feature and target names as the file exposes them (NPY columns are c0, c1, ...)."""
    if path.suffix == ".npy":
        names = [f"c{index}" for index in range(frame.shape[1])]
        return names[:-1], names[-1]
    return list(frame.columns[:-1]), str(frame.columns[-1])
