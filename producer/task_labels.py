"""Short, readable argument summaries that Flower shows instead of the full job dict.

Celery puts ``argsrepr`` and ``kwargsrepr`` in each message's headers; Flower and the
worker logs display those. A map task's summary names its chunk (file and range), never
the data or the job's whole column list.
"""

from typing import Any


def chunk_label(job: dict[str, Any], chunk: dict[str, Any]) -> str:
    """Return e.g. ``"job=1a2b3c4d chunk 3/12 flights.csv lines 150002-200001 (50000 rows)"``."""
    where = chunk_range(chunk)
    return (f"job={job['job_id'][:8]} chunk {chunk['index'] + 1}/{job['n_chunks']} "
            f"{chunk['path']} {where} ({chunk['rows']} rows)")


def chunk_range(chunk: dict[str, Any]) -> str:
    """Return where a chunk lies in its file: CSV lines, a Parquet row group range, NPY rows."""
    if "first_line" in chunk:
        last_line = chunk["first_line"] + chunk["rows"] - 1
        return f"lines {chunk['first_line']}-{last_line} bytes [{chunk['start']}, {chunk['end']})"
    if "row_group" in chunk:
        offset = chunk["offset"]
        return f"row group {chunk['row_group']} rows [{offset}, {offset + chunk['rows']})"
    start = chunk.get("start", 0)
    return f"rows [{start}, {start + chunk['rows']})"


def reduce_label(job: dict[str, Any]) -> str:
    """Return the kwargs summary of a job's reduce task."""
    features = ",".join(job["features"])
    return (f"{{'job': '{job['kind']} {job['job_id'][:8]} {job['target']} ~ {features} "
            f"on {job['source']} ({job['n_rows']} rows, {job['n_chunks']} chunks)'}}")
