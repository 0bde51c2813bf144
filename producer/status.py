"""``lepton status JOB_ID``: a job's state, chunks done of total and errors, read from Redis.

Everything shown is kept in Redis by :mod:`workers.progress` and the result backend, so
the answer survives a restart of Flower, of the producer or of any worker.
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from producer.arguments import job_id
from producer.client import Client, local_result, translate_redis_errors
from tasks.errors import JobNotFound
from workers.checkpoints import optimization_state
from workers.progress import count_done, read_failures, read_job
from workers.settings import Settings

# Result keys worth a line in the status; the full result is ``lepton result JOB_ID``.
SUMMARY_KEYS = ("r_squared", "n_rows", "n_dropped", "best_f", "evaluations", "elapsed_s")


@dataclass(frozen=True)
class JobStatus:
    """What is known about a job.

    ``state`` is one of ``QUEUED`` (no chunk done yet), ``RUNNING``, ``REDUCING`` (every
    chunk done, result not stored yet), ``SUCCESS``, ``FAILURE``, and ``STOPPED`` for an
    optimisation stopped before its end (its generations count as chunks).
    """

    job_id: str
    kind: str
    state: str
    chunks_done: int
    chunks_total: int
    errors: dict[int, str]
    source: str | None
    submitted_at: float | None
    summary: dict[str, Any]


def read_status(client: Client, job_id: str) -> JobStatus:
    """Return the job's status from Redis; raise :class:`JobNotFound` if nothing is known."""
    with translate_redis_errors(client.settings.broker_url):
        description = read_job(client.redis, job_id)
        meta = client.app.backend.get_task_meta(job_id)
        done = count_done(client.redis, job_id)
        errors = read_failures(client.redis, job_id)
    if description is None and not errors and meta["status"] not in ("SUCCESS", "FAILURE"):
        raise JobNotFound(f"no job {job_id} in this cluster (progress expires after "
                          f"{client.settings.result_expires_s} s)")

    description = description or {}
    result = meta["result"] if meta["status"] == "SUCCESS" else {}
    total = int(description.get("n_chunks", result.get("n_chunks", 0)))
    if meta["status"] == "FAILURE" and not errors:
        errors = {-1: _failure_text(meta["result"])}
    state = _state(meta["status"], done, total, errors)
    if description.get("kind") == "optimization" and state not in ("SUCCESS", "FAILURE"):
        state = optimization_state(client.redis, job_id, state)
    return JobStatus(
        job_id=job_id,
        kind=str(description.get("kind", result.get("kind", "unknown"))),
        state=state,
        chunks_done=total if meta["status"] == "SUCCESS" else done,
        chunks_total=total,
        errors=errors,
        source=description.get("source", result.get("source")),
        submitted_at=description.get("submitted_at"),
        summary={key: result[key] for key in SUMMARY_KEYS if key in result},
    )


def status_from_result_file(settings: Settings, job_id: str) -> JobStatus:
    """Return the status of a job a local cluster finished, from its result file."""
    result = local_result(settings, job_id)
    kind = str(result.get("kind", "unknown"))
    done = int(result.get("generations" if kind == "optimization" else "n_chunks", 0))
    return JobStatus(job_id=job_id, kind=kind, state="SUCCESS", chunks_done=done,
                     chunks_total=done, errors={}, source=result.get("source"),
                     submitted_at=None,
                     summary={key: result[key] for key in SUMMARY_KEYS if key in result})


def format_status(status: JobStatus, now: float | None = None) -> str:
    """Return the status as the few lines ``lepton status`` prints."""
    lines = [f"job       {status.job_id} ({status.kind})",
             f"state     {status.state}",
             f"{_unit_of(status.kind):<9} {status.chunks_done}/{status.chunks_total} done"]
    if status.source:
        lines.append(f"source    {status.source}")
    if status.submitted_at is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(status.submitted_at))
        age_s = (now or time.time()) - status.submitted_at
        lines.append(f"submitted {when} ({age_s:.0f} s ago)")
    if status.summary:
        lines.append("result    " + "  ".join(f"{key}={value}"
                                              for key, value in status.summary.items()))
    if not status.errors:
        lines.append("errors    none")
    for index, text in status.errors.items():
        where = "job" if index < 0 else f"chunk {index}"
        lines.append(f"error     {where}: {text}")
    return "\n".join(lines)


def _unit_of(kind: str) -> str:
    # An optimisation's progress is counted in generations, kept in the chunk fields.
    return "generations" if kind == "optimization" else "chunks"


def add_commands(commands: Any) -> None:
    """Add ``lepton status`` to the ``lepton`` command's subparsers."""
    parser = commands.add_parser("status", help="show a job's state, progress and errors")
    parser.add_argument("job_id", type=job_id)
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    """Print a job's status; exit 0 even for a failed job (its errors are printed)."""
    settings = Settings.from_env()
    if settings.broker_url:
        client = Client(settings)
        try:
            status = read_status(client, args.job_id)
        finally:
            client.close()
    else:
        status = status_from_result_file(settings, args.job_id)
    if args.json:
        print(json.dumps(asdict(status), indent=2))
    else:
        print(format_status(status))
    return 0


def _state(backend_status: str, done: int, total: int, errors: dict[int, str]) -> str:
    if backend_status in ("SUCCESS", "FAILURE"):
        return backend_status
    if errors:
        return "FAILURE"
    if done == 0:
        return "QUEUED"
    return "REDUCING" if done >= total else "RUNNING"


def _failure_text(error: Any) -> str:
    if isinstance(error, dict) and "exc_type" in error:
        message = error.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(part) for part in message)
        return f"{error.get('exc_module')}.{error['exc_type']}: {message}"
    if isinstance(error, BaseException):
        return f"{type(error).__module__}.{type(error).__name__}: {error}"
    return str(error)
