"""Turn a user's request into a job description and its chunk plan, checking input early."""

import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.data_root import relative_to_root
from tasks.errors import ColumnNotFound, DatasetNotFound, LeptonError
from tasks.formats import Chunk, check_columns, file_stamp, inspect_dataset, plan_chunks

# A Celery task costs a few milliseconds, so chunks below this stop paying off.
MIN_DEFAULT_CHUNK_ROWS = 50_000
MAX_DEFAULT_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class RegressionPlan:
    """The job description sent with every task, and the chunks to map."""

    job: dict[str, Any]
    chunks: list[Chunk]


def default_chunk_rows(n_rows: int, workers: int) -> int:
    """Aim for about four chunks per worker, within sensible bounds."""
    wanted = math.ceil(n_rows / (4 * max(workers, 1)))
    return max(1, min(MAX_DEFAULT_CHUNK_ROWS, max(MIN_DEFAULT_CHUNK_ROWS, wanted)))


def plan_regression(path: Path, target: str, features: list[str] | None, intercept: bool,
                    chunk_rows: int | None, data_root: Path, workers: int) -> RegressionPlan:
    """Inspect the dataset, validate the columns and cut it into chunks.

    ``features`` defaults to every numeric column except the target.
    """
    path = Path(path)
    if not path.expanduser().exists():
        raise DatasetNotFound(f"{path}: no such file")
    relative_path = relative_to_root(path, data_root)
    info = inspect_dataset(path.expanduser().resolve())

    if target not in info.columns:
        raise ColumnNotFound(f"{path}: no target column '{target}' "
                             f"(columns: {', '.join(info.columns)})")
    if features is None:
        features = [name for name in info.columns if name != target and info.numeric[name]]
    if not features and not intercept:
        raise LeptonError("nothing to fit: no features and no intercept")
    if target in features:
        raise LeptonError(f"the target '{target}' cannot also be a feature")
    repeated = sorted({name for name in features if features.count(name) > 1})
    if repeated:
        raise LeptonError(f"feature {', '.join(map(repr, repeated))} is listed twice")
    if intercept and "intercept" in features:
        raise LeptonError("a feature named 'intercept' would clash with the fitted "
                          "intercept: rename the column or use --no-intercept")
    check_columns(info, features + [target])

    rows_per_chunk = chunk_rows or default_chunk_rows(info.n_rows, workers)
    if rows_per_chunk < 1:
        raise LeptonError(f"--chunk-rows must be at least 1, got {rows_per_chunk}")
    chunks = plan_chunks(info, relative_path, rows_per_chunk)
    job = {
        "job_id": str(uuid.uuid4()),
        "kind": "regression",
        "source": str(path.expanduser().resolve()),
        "format": info.format,
        "columns": info.columns,
        "target": target,
        "features": features,
        "intercept": intercept,
        "n_rows": sum(chunk["rows"] for chunk in chunks),
        # Size and modification time as planned: a map refuses a file changed since.
        "file_stamp": file_stamp(info.path),
        "n_chunks": len(chunks),
    }
    return RegressionPlan(job, chunks)
