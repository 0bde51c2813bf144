"""The producer's Python API: submit a job as one chord, wait with progress, fetch results."""

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from celery import Celery, chord
from kombu.exceptions import OperationalError
from tqdm import tqdm

from producer.planning import plan_regression
from producer.progress_bar import progress_bar
from producer.task_labels import chunk_label, reduce_label
from tasks import errors
from tasks.errors import BrokerUnavailable, JobFailed, JobNotFound, LeptonError
from tasks.result_files import read_result
from workers.app import create_app
from workers.checkpoints import not_finished_error
from workers.progress import count_done, first_failure, read_job, record_job
from workers.settings import Settings, redact_url

logger = logging.getLogger(__name__)

POLL_START_S = 0.02
POLL_MAX_S = 0.1
CHUNK_ERROR_GRACE_S = 2.0
STALL_WARNING_S = 20.0
PUBLISH_RETRIES = 2


class JobTimeout(LeptonError):
    """The job did not finish within the time the caller allowed."""


class Client:
    """Talks to a Lepton cluster through its Redis broker and result backend."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        bound_waits(self.app, settings.redis_timeout_s)
        self.redis = redis.Redis.from_url(settings.result_backend or "",
                                          socket_timeout=settings.redis_timeout_s,
                                          socket_connect_timeout=settings.redis_timeout_s)

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
        plan = plan_regression(Path(path), target, features, intercept,
                               chunk_rows or self.settings.chunk_rows, self.settings.data_root,
                               workers)
        job = {**plan.job, "submitted_at": time.time()}
        job_id = job["job_id"]

        # Flower shows argsrepr/kwargsrepr: a chunk's place in its file, not the job dict.
        header = [self.app.signature("lepton.regression.map", args=(job, chunk),
                                     argsrepr=f"({chunk_label(job, chunk)!r})")
                  for chunk in plan.chunks]
        callback = self.app.signature("lepton.regression.reduce", kwargs={"job": job},
                                      argsrepr=f"(<{job['n_chunks']} chunk partials>,)",
                                      kwargsrepr=reduce_label(job))
        with translate_redis_errors(self.settings.broker_url):
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
        with translate_redis_errors(self.settings.broker_url):
            description = read_job(self.redis, job_id)
        if description is None:
            raise JobNotFound(f"no job {job_id} in this cluster")
        total = int(description["n_chunks"])
        with progress_bar(total, "chunk", f"{description['kind']} {job_id[:8]}",
                          progress) as bar:
            check = health_check or WorkerWatch(self, job_id).check
            return poll_until_done(lambda: self._poll(job_id, bar), job_id,
                                   self.settings.broker_url, timeout_s, check)

    def result(self, job_id: str) -> dict[str, Any]:
        """Return a finished job's result from the backend or the results directory."""
        with translate_redis_errors(self.settings.broker_url):
            meta = self.app.backend.get_task_meta(job_id)
            if meta["status"] == "SUCCESS":
                return dict(meta["result"])
            if meta["status"] == "FAILURE":
                raise self._failure_of(job_id, meta["result"])
            stored = read_result(self.settings.results_dir, job_id)
            if stored is not None:
                return stored
            description = read_job(self.redis, job_id)
        if description is None:
            raise JobNotFound(f"no job or result {job_id} (results expire after "
                              f"{self.settings.result_expires_s} s)")
        if description.get("kind") == "optimization":
            raise not_finished_error(self.redis, job_id)
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
            raise rebuild_error(*failure)
        if meta["status"] == "FAILURE":
            raise self._failure_of(job_id, meta["result"])
        bar.update(count_done(self.redis, job_id) - bar.n)
        return None


    def _failure_of(self, job_id: str, error: Any) -> LeptonError:
        """Prefer the failed chunk's own error to the chord's summary of it."""
        # The backend hands back the decoded exception, or its JSON form if the class
        # could not be imported here.
        kind = error.get("exc_type") if isinstance(error, dict) else type(error).__name__
        deadline = time.monotonic() + CHUNK_ERROR_GRACE_S
        while True:
            failure = first_failure(self.redis, job_id)
            if failure is not None:
                return rebuild_error(*failure)
            if kind != "ChordError" or time.monotonic() >= deadline:
                return _job_error(job_id, error)
            time.sleep(0.05)


def local_result(settings: Settings, job_id: str) -> dict[str, Any]:
    """Return the result file a finished job left in the results directory.

    The way to a local cluster's results once its Redis is gone; raise
    :class:`JobNotFound` when there is no such file.
    """
    stored = read_result(settings.results_dir, job_id)
    if stored is None:
        raise JobNotFound(f"no result {job_id} in {settings.results_dir}, and no cluster to "
                          "ask: set LEPTON_BROKER_URL")
    return stored


class WorkerWatch:
    """Warns once when a job has made no progress and no worker answers a ping.

    On a shared cluster the job keeps waiting (workers may be started later, and a
    vanished worker's tasks come back after the visibility timeout); the warning says so.
    """

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.job_id = job_id
        self.last_done = -1
        self.last_change = time.monotonic()
        self.warned = False

    def check(self) -> None:
        """Called between polls; pings workers after ``STALL_WARNING_S`` without progress."""
        done = count_done(self.client.redis, self.job_id)
        if done != self.last_done:
            self.last_done, self.last_change = done, time.monotonic()
            return
        if self.warned or time.monotonic() - self.last_change < STALL_WARNING_S:
            return
        if not self.client.app.control.ping(timeout=1.0):
            message = (f"job {self.job_id}: no progress for {STALL_WARNING_S:.0f} s and no "
                       "worker answers a ping; start one with `lepton worker` (the job "
                       "waits for it)")
            logger.warning("no live worker job=%s", self.job_id)
            tqdm.write(f"lepton: warning: {message}", file=sys.stderr)
        self.warned = True


def poll_until_done(poll: Callable[[], dict[str, Any] | None], job_id: str,
                    broker_url: str | None, timeout_s: float | None,
                    health_check: Callable[[], None] | None) -> dict[str, Any]:
    """Call ``poll`` with a growing pause until it returns a result, and return it.

    Redis errors become :class:`BrokerUnavailable`; ``health_check`` runs between polls
    and may raise; past ``timeout_s`` seconds, :class:`JobTimeout` is raised.
    """
    started = time.monotonic()
    delay = POLL_START_S
    while True:
        with translate_redis_errors(broker_url):
            outcome = poll()
        if outcome is not None:
            return outcome
        if health_check is not None:
            health_check()
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise JobTimeout(f"job {job_id} did not finish within {timeout_s} s")
        time.sleep(delay)
        delay = min(POLL_MAX_S, delay * 1.5)


def _job_error(job_id: str, error: Any) -> LeptonError:
    if isinstance(error, dict) and "exc_type" in error:
        message = error.get("exc_message")
        if isinstance(message, (list, tuple)):
            message = " ".join(str(part) for part in message)
        return rebuild_error(-1, f"{error.get('exc_module')}.{error['exc_type']}: {message}")
    if isinstance(error, LeptonError):
        return error
    return JobFailed(f"job {job_id} failed: {type(error).__name__}: {error}")


def rebuild_error(chunk_index: int, text: str) -> LeptonError:
    """Turn ``"module.Class: message"`` recorded by a worker back into a Lepton error."""
    qualified, _, message = text.partition(": ")
    module, _, name = qualified.rpartition(".")
    error_class = getattr(errors, name, None) if module == errors.__name__ else None
    if isinstance(error_class, type) and issubclass(error_class, LeptonError):
        return error_class(message)
    return JobFailed(f"chunk {chunk_index} failed: {text}")


class translate_redis_errors:
    """Context manager turning Redis and kombu connection errors into BrokerUnavailable.

    ``url`` (its password is never shown) names the server in the message.
    """

    def __init__(self, url: str | None = None) -> None:
        self.where = f" at {redact_url(url)}" if url else ""
        self.has_password = bool(url) and urlsplit(url or "").password is not None

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, error: BaseException | None, _: Any) -> None:
        if error is None or isinstance(error, LeptonError):
            return
        causes = _causes(error)
        refused = any(_is_auth_error(cause) for cause in causes)
        if refused and not self.has_password:
            raise BrokerUnavailable(
                f"Redis{self.where} requires a password: put it in the URL as "
                "redis://:PASSWORD@host:port/db") from error
        if refused:
            raise BrokerUnavailable(
                f"Redis{self.where} refused the password: {error} (check the password in "
                "LEPTON_BROKER_URL / LEPTON_RESULT_BACKEND)") from error
        if any(isinstance(cause, (redis.TimeoutError, TimeoutError)) for cause in causes):
            raise BrokerUnavailable(f"Redis{self.where} did not answer in time "
                                    f"(LEPTON_REDIS_TIMEOUT_S): {error}") from error
        if any(isinstance(cause, (redis.ConnectionError, OperationalError, ConnectionError))
               for cause in causes):
            raise BrokerUnavailable(f"cannot reach Redis{self.where}: {error}") from error


def _causes(error: BaseException) -> list[BaseException]:
    """Return the error and the errors it was raised from (kombu wraps redis-py's)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_auth_error(error: BaseException) -> bool:
    if isinstance(error, redis.AuthenticationError):
        return True
    text = str(error)
    return isinstance(error, (redis.ResponseError, OperationalError)) and any(
        marker in text for marker in ("NOAUTH", "WRONGPASS", "username-password",
                                      "must be called with the client already authenticated"))


def bound_waits(app: Celery, timeout_s: float) -> None:
    """Make a producer's broker and backend calls give up after about ``timeout_s``.

    Workers keep Celery's defaults; a producer should fail fast instead of hanging.
    """
    transport_options = {**app.conf.broker_transport_options,
                         "socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_timeout=timeout_s,
        redis_socket_timeout=timeout_s,
        redis_socket_connect_timeout=timeout_s,
        task_publish_retry_policy={"max_retries": PUBLISH_RETRIES, "interval_start": 0,
                                   "interval_step": 0.2, "interval_max": 0.5},
    )
