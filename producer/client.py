"""The producer's Python API: submit a job as one chord, wait with progress, fetch results."""

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import chord
from kombu.exceptions import OperationalError
from tqdm import tqdm

from producer.planning import plan_regression
from tasks import errors
from tasks.errors import BrokerUnavailable, JobFailed, JobNotFound, LeptonError
from workers.app import create_app
from workers.progress import count_done, first_failure, read_job, record_job
from workers.settings import Settings

logger = logging.getLogger(__name__)

POLL_START_S = 0.02
POLL_MAX_S = 0.1
CHUNK_ERROR_GRACE_S = 2.0


class JobTimeout(LeptonError):
    """The job did not finish within the time the caller allowed."""


class Client:
    """Talks to a Lepton cluster through its Redis broker and result backend."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.redis = redis.Redis.from_url(settings.result_backend or "")

    def close(self) -> None:
        """Release the connections held by this client."""
        # The redis backend subscribes to the result channel of every task it sends,
        # though we poll keys instead; forget those channels so that garbage-collected
        # results do not try to unsubscribe after Redis is gone.
        consumer = getattr(self.app.backend, "result_consumer", None)
        if consumer is not None:
            consumer.subscribed_to.clear()
            consumer.stop()
        self.redis.close()
        self.app.close()

    def submit_regression(self, path: str | Path, target: str,
                          features: list[str] | None = None, intercept: bool = True,
                          chunk_rows: int | None = None, workers: int = 1) -> str:
        """Validate the input, enqueue one map task per chunk and return the job id.

        Nothing is enqueued when the file, a column or its type is wrong.
        """
        plan = plan_regression(Path(path), target, features, intercept, chunk_rows,
                               self.settings.data_root, workers)
        job = {**plan.job, "submitted_at": time.time()}
        job_id = job["job_id"]

        header = [self.app.signature("lepton.regression.map", args=(job, chunk))
                  for chunk in plan.chunks]
        callback = self.app.signature("lepton.regression.reduce", kwargs={"job": job})
        with translate_redis_errors():
            record_job(self.redis, job_id, {"kind": "regression", "n_chunks": job["n_chunks"],
                                            "source": job["source"]},
                       self.settings.result_expires_s)
            chord(header)(callback.set(task_id=job_id))
        logger.info("job submitted job=%s chunks=%d rows=%d", job_id, job["n_chunks"],
                    job["n_rows"])
        return job_id

    def wait(self, job_id: str, progress: bool = True, timeout_s: float | None = None,
             health_check: Callable[[], None] | None = None) -> dict[str, Any]:
        """Block until the job finishes; return its result or raise its error.

        ``health_check`` is called between polls and may raise (the local cluster uses
        it to notice a dead worker instead of waiting forever).
        """
        with translate_redis_errors():
            description = read_job(self.redis, job_id)
        if description is None:
            raise JobNotFound(f"no job {job_id} in this cluster")
        total = int(description["n_chunks"])
        started = time.monotonic()
        delay = POLL_START_S
        with tqdm(total=total, unit="chunk", disable=not progress, leave=False,
                  desc=f"{description['kind']} {job_id[:8]}") as bar:
            while True:
                with translate_redis_errors():
                    outcome = self._poll(job_id, bar)
                if outcome is not None:
                    return outcome
                if health_check is not None:
                    health_check()
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    raise JobTimeout(f"job {job_id} did not finish within {timeout_s} s")
                time.sleep(delay)
                delay = min(POLL_MAX_S, delay * 1.5)

    def result(self, job_id: str) -> dict[str, Any]:
        """Return a finished job's result from the backend or the results directory."""
        stored = self.settings.results_dir / f"{job_id}.json"
        with translate_redis_errors():
            meta = self.app.backend.get_task_meta(job_id)
            if meta["status"] == "SUCCESS":
                return dict(meta["result"])
            if meta["status"] == "FAILURE":
                raise self._failure_of(job_id, meta["result"])
            if stored.exists():
                return dict(json.loads(stored.read_text()))
            description = read_job(self.redis, job_id)
        if description is None:
            raise JobNotFound(f"no job or result {job_id} (results expire after "
                              f"{self.settings.result_expires_s} s)")
        done = count_done(self.redis, job_id)
        raise LeptonError(f"job {job_id} is still running: {done}/"
                          f"{description['n_chunks']} chunks done")

    def _poll(self, job_id: str, bar: tqdm) -> dict[str, Any] | None:
        meta = self.app.backend.get_task_meta(job_id)
        if meta["status"] == "SUCCESS":
            bar.update(bar.total - bar.n)
            return dict(meta["result"])
        failure = first_failure(self.redis, job_id)
        if failure is not None:
            raise _rebuild_error(*failure)
        if meta["status"] == "FAILURE":
            raise self._failure_of(job_id, meta["result"])
        bar.update(count_done(self.redis, job_id) - bar.n)
        return None


    def _failure_of(self, job_id: str, error: Any) -> LeptonError:
        """Prefer the failed chunk's own error to the chord's summary of it."""
        is_chord_error = isinstance(error, dict) and error.get("exc_type") == "ChordError"
        deadline = time.monotonic() + CHUNK_ERROR_GRACE_S
        while is_chord_error and time.monotonic() < deadline:
            # The worker records the chunk's error just after it fails the chord.
            failure = first_failure(self.redis, job_id)
            if failure is not None:
                return _rebuild_error(*failure)
            time.sleep(0.05)
        return _job_error(job_id, error)


def _job_error(job_id: str, error: Any) -> LeptonError:
    if isinstance(error, dict) and "exc_type" in error:
        message = error.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(part) for part in message)
        return _rebuild_error(-1, f"{error.get('exc_module')}.{error['exc_type']}: {message}")
    if isinstance(error, LeptonError):
        return error
    return JobFailed(f"job {job_id} failed: {type(error).__name__}: {error}")


def _rebuild_error(chunk_index: int, text: str) -> LeptonError:
    """Turn ``"module.Class: message"`` recorded by a worker back into a Lepton error."""
    qualified, _, message = text.partition(": ")
    module, _, name = qualified.rpartition(".")
    error_class = getattr(errors, name, None) if module == errors.__name__ else None
    if isinstance(error_class, type) and issubclass(error_class, LeptonError):
        return error_class(message)
    return JobFailed(f"chunk {chunk_index} failed: {text}")


class translate_redis_errors:
    """Context manager turning Redis and kombu connection errors into BrokerUnavailable."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _: Any) -> None:
        if isinstance(error, redis.AuthenticationError) or (
                isinstance(error, redis.ResponseError) and "NOAUTH" in str(error)):
            raise BrokerUnavailable(f"Redis refused the password: {error}") from error
        if isinstance(error, (redis.ConnectionError, OperationalError)):
            raise BrokerUnavailable(f"cannot reach Redis: {error}") from error
