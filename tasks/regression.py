"""Celery tasks of the regression job: one map per chunk, one reduce as chord callback.

The numerical work lives in :mod:`tasks.least_squares`; this module only reads the
chunk, calls the kernel, checks completeness and writes the result.
"""

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from celery import Task, shared_task

from tasks.data_root import resolve_in_root
from tasks.errors import ColumnNotNumeric, FitError, JobIncomplete
from tasks.formats import file_stamp, read_chunk
from tasks.least_squares import Partial, block_partial, merge_partials, solve
from tasks.result_files import write_result
from workers.app import settings_of
from workers.progress import mark_chunk_done, record_failure

logger = logging.getLogger(__name__)


class JobTask(Task):
    """A task whose first argument is the job; failures are recorded for the producer."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        job, chunk_index = args[0], args[1]["index"] if len(args) > 1 else -1
        settings = settings_of(self.app)
        record_failure(self.app.backend.client, job["job_id"], chunk_index, exc,
                       settings.result_expires_s)


@shared_task(name="lepton.regression.map", bind=True, base=JobTask)
def regression_map(self: Task, job: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    """Read one chunk and return its partial (see :class:`tasks.least_squares.Partial`)."""
    settings = settings_of(self.app)
    try:
        return _map_chunk(self, job, chunk)
    except Exception as error:
        # Recorded before Celery stores the failure and fails the chord, so the producer
        # always finds the chunk's own error rather than the chord's summary of it.
        record_failure(self.app.backend.client, job["job_id"], chunk["index"], error,
                       settings.result_expires_s)
        raise


def _map_chunk(task: Task, job: dict[str, Any], chunk: dict[str, Any]) -> dict[str, Any]:
    settings = settings_of(task.app)
    path = resolve_in_root(chunk["path"], settings.data_root)
    if "file_stamp" in job and file_stamp(path) != job["file_stamp"]:
        raise JobIncomplete(f"{path}: the file changed after the job was submitted "
                            f"(chunk {chunk['index']}); submit it again")
    used = job["features"] + [job["target"]]
    values = read_chunk(path, chunk, used, job["columns"])
    _reject_infinite(values, path, chunk, used)

    complete = ~np.isnan(values).any(axis=1)
    usable = values if complete.all() else np.asfortranarray(values[complete])
    partial = block_partial(usable, job["intercept"])

    mark_chunk_done(task.app.backend.client, job["job_id"], chunk["index"],
                    settings.result_expires_s)
    logger.debug("chunk done job=%s chunk=%d rows=%d", job["job_id"], chunk["index"],
                 len(values))
    return {"chunk": chunk["index"], "rows_read": int(len(values)),
            "dropped": int(len(values) - len(usable)), "partial": partial.to_json()}


@shared_task(name="lepton.regression.reduce", bind=True)
def regression_reduce(self: Task, chunk_results: list[dict[str, Any]],
                      job: dict[str, Any]) -> dict[str, Any]:
    """Check that every chunk arrived once, merge, solve and write the result."""
    check_complete(chunk_results, job)
    partials = [Partial.from_json(result["partial"]) for result in chunk_results]
    try:
        fit = solve(merge_partials(partials), job["features"], job["target"],
                    job["intercept"])
    except FitError as error:
        # The kernel knows columns, not files: say which dataset the verdict is about.
        raise type(error)(f"{job['source']}: {error}") from error

    names = (["intercept"] if job["intercept"] else []) + job["features"]
    result = {
        "job_id": job["job_id"],
        "kind": "regression",
        "source": job["source"],
        "target": job["target"],
        "features": names,
        "coefficients": fit.coefficients.tolist(),
        "std_errors": fit.std_errors.tolist(),
        "r_squared": fit.r_squared,
        "residual_std": fit.residual_std,
        "condition_number": fit.condition_number,
        "n_rows": fit.n_rows,
        "n_dropped": sum(result["dropped"] for result in chunk_results),
        "n_chunks": job["n_chunks"],
        "elapsed_s": round(time.time() - job["submitted_at"], 3),
    }
    write_result(settings_of(self.app).results_dir, result)
    logger.info("job done job=%s rows=%d chunks=%d", job["job_id"], fit.n_rows,
                job["n_chunks"])
    return result


def check_complete(chunk_results: list[dict[str, Any]], job: dict[str, Any]) -> None:
    """Raise :class:`JobIncomplete` unless each planned chunk arrived exactly once."""
    seen = [result["chunk"] for result in chunk_results]
    planned = set(range(job["n_chunks"]))
    missing = sorted(planned - set(seen))
    duplicated = sorted({index for index in seen if seen.count(index) > 1})
    if missing or duplicated or len(seen) != job["n_chunks"]:
        raise JobIncomplete(
            f"job {job['job_id']}: chunks missing {missing[:10]}, duplicated "
            f"{duplicated[:10]}; refusing to write a result"
        )
    rows_read = sum(result["rows_read"] for result in chunk_results)
    if rows_read != job["n_rows"]:
        raise JobIncomplete(
            f"job {job['job_id']}: chunks read {rows_read} rows but {job['n_rows']} "
            "were planned; the file may have changed since it was submitted"
        )


def _reject_infinite(values: np.ndarray, path: Path, chunk: dict[str, Any],
                     used: list[str]) -> None:
    infinite = np.isinf(values)
    if not infinite.any():
        return
    row, column = (int(index[0]) for index in np.nonzero(infinite))
    where = f"line {chunk['first_line'] + row}" if "first_line" in chunk else (
        f"row {chunk.get('start', chunk.get('offset', 0)) + row}")
    raise ColumnNotNumeric(f"{path}: chunk {chunk['index']}, {where}: column "
                           f"'{used[column]}' holds an infinite value")
