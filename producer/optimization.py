"""The optimisation API: submit a GA or PSO search, watch it, stop it, resume it.

The producer validates the request, stores generation 0 as the first checkpoint and
enqueues its chord; from then on the workers drive the search (see
:mod:`tasks.optimization`) and the producer only reads progress from Redis.
"""

import json
import logging
import math
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from producer.client import (
    Client,
    poll_until_done,
    rebuild_error,
    translate_redis_errors,
)
from producer.progress_bar import progress_bar
from producer.run import connect
from tasks.errors import JobFailed, JobNotFound, JobStopped
from tasks.objectives import get_objective
from tasks.optimization import checkpoint_file, dispatch_generation, write_checkpoint_file
from tasks.search import MAX_SEED, Bounds, SearchConfig, SearchState, build_config, initial_state
from workers.checkpoints import (
    Progress,
    arrays_from_json,
    read_checkpoint,
    read_progress,
    reopen,
    request_stop,
    write_checkpoint,
)
from workers.progress import first_failure, record_job
from workers.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_POPULATION = 50
DEFAULT_GENERATIONS = 200


def default_batch(population: int, workers: int) -> int:
    """One fitness task per worker process and generation: fewest messages, all busy."""
    return max(1, math.ceil(population / max(workers, 1)))


def plan_optimization(settings: Settings, algorithm: str, objective: str, dim: int,
                      bounds: Bounds = None, *, population: int = DEFAULT_POPULATION,
                      generations: int = DEFAULT_GENERATIONS, seed: int | None = None,
                      batch: int | None = None, target: float | None = None,
                      stall: int | None = None, workers: int = 1) -> SearchConfig:
    """Validate a request without touching a cluster and return its settings.

    Raises when the objective is unknown, its data is missing, or a setting is out of
    range. ``seed`` defaults to a fresh random one (reported in the result).
    """
    found = get_objective(objective, settings.objectives_module)
    config = build_config(
        algorithm, found, dim, bounds, population, generations,
        secrets.randbelow(MAX_SEED + 1) if seed is None else seed,
        default_batch(population, workers) if batch is None else batch, target, stall)
    if found.check_data is not None:
        found.check_data(settings.data_root)
    return config


def submit_optimization(client: Client, algorithm: str, objective: str, dim: int,
                        bounds: Bounds = None, *, population: int = DEFAULT_POPULATION,
                        generations: int = DEFAULT_GENERATIONS, seed: int | None = None,
                        batch: int | None = None, target: float | None = None,
                        stall: int | None = None, workers: int = 1) -> str:
    """Validate the request, enqueue generation 0 and return the job id.

    Nothing is enqueued when :func:`plan_optimization` refuses the request.
    """
    config = plan_optimization(client.settings, algorithm, objective, dim, bounds,
                               population=population, generations=generations, seed=seed,
                               batch=batch, target=target, stall=stall, workers=workers)
    return submit_config(client, config)


def submit_config(client: Client, config: SearchConfig) -> str:
    """Enqueue generation 0 of a planned search and return the new job id."""
    job_id = str(uuid.uuid4())
    state = initial_state(config)
    with translate_redis_errors(client.settings.broker_url):
        _record(client, job_id, config, state, "running")
        dispatch_generation(client.app, job_id, config, state)
    logger.info("job submitted job=%s algorithm=%s objective=%s population=%d batch=%d",
                job_id, config.algorithm, config.objective, config.population, config.batch)
    return job_id


def wait_optimization(client: Client, job_id: str, progress: bool = True,
                      timeout_s: float | None = None,
                      health_check: Callable[[], None] | None = None) -> dict[str, Any]:
    """Block until the job finishes and return its result; raise its error if it fails.

    The progress bar shows generations and the best fitness so far. Raises
    :class:`JobStopped` when the job stops before finishing.
    """
    with translate_redis_errors(client.settings.broker_url):
        checkpoint = read_checkpoint(client.redis, job_id)
    if checkpoint is None:
        return client.result(job_id)
    config = SearchConfig.from_json(checkpoint.config)
    with progress_bar(config.generations, "gen", f"{config.algorithm} {config.objective}",
                      progress) as bar:
        return poll_until_done(lambda: _poll(client, job_id, bar), job_id,
                               client.settings.broker_url, timeout_s, health_check)


def stop_optimization(client: Client, job_id: str) -> Progress:
    """Ask a job to stop after the generation in flight; return its progress then."""
    with translate_redis_errors(client.settings.broker_url):
        return request_stop(client.redis, job_id)


def resume_optimization(client: Client, job_id: str) -> str:
    """Continue a stopped or failed job from its checkpoint; return the job id.

    The checkpoint comes from Redis, or from the results directory when Redis lost it
    (a local cluster's Redis lives only as long as its command). A job that is in fact
    still running is enqueued again harmlessly: the generation is advanced once and the
    duplicate is dropped.
    """
    with translate_redis_errors(client.settings.broker_url):
        checkpoint = read_checkpoint(client.redis, job_id)
        if checkpoint is None:
            if not _restore_from_file(client, job_id):
                return job_id
            checkpoint = read_checkpoint(client.redis, job_id)
        if checkpoint is None:
            raise JobNotFound(f"no checkpoint of job {job_id}")
        if checkpoint.status == "done":
            return job_id
        if checkpoint.status == "running" and not checkpoint.stop_requested:
            logger.warning("job looks alive, enqueueing its generation again job=%s "
                           "generation=%d", job_id, checkpoint.generation)
        reopen(client.redis, job_id)
        dispatch_generation(client.app, job_id, SearchConfig.from_json(checkpoint.config),
                            SearchState.from_parts(checkpoint.state, checkpoint.arrays))
    logger.info("job resumed job=%s generation=%d", job_id, checkpoint.generation)
    return job_id


def save_checkpoint_file(client: Client, job_id: str) -> None:
    """Copy the job's Redis checkpoint to the results directory (before Redis goes away)."""
    with translate_redis_errors(client.settings.broker_url):
        checkpoint = read_checkpoint(client.redis, job_id)
    if checkpoint is not None:
        write_checkpoint_file(client.settings.results_dir, job_id, checkpoint)


def optimize(algorithm: str, objective: str, dim: int, bounds: Bounds = None, *,
             population: int = DEFAULT_POPULATION, generations: int = DEFAULT_GENERATIONS,
             seed: int | None = None, batch: int | None = None, target: float | None = None,
             stall: int | None = None, workers: int | None = None,
             settings: Settings | None = None, progress: bool = True,
             timeout_s: float | None = None) -> dict[str, Any]:
    """Minimise ``objective`` over the box with the GA (``"ga"``) or PSO (``"pso"``).

    Runs on the configured cluster, or on a local one started for the call. Returns
    the result described in the README (``best_x``, ``best_f``, ``history``, ...).
    """
    with connect(settings, workers) as (client, cluster):
        worker_count = cluster.workers if cluster else (workers or 1)
        job_id = submit_optimization(client, algorithm, objective, dim, bounds,
                                     population=population, generations=generations,
                                     seed=seed, batch=batch, target=target, stall=stall,
                                     workers=worker_count)
        return wait_optimization(client, job_id, progress, timeout_s,
                                 cluster.check_alive if cluster else None)


def resume(job_id: str, *, workers: int | None = None, settings: Settings | None = None,
           progress: bool = True, timeout_s: float | None = None) -> dict[str, Any]:
    """Resume a stopped job (see :func:`resume_optimization`) and wait for its result."""
    with connect(settings, workers) as (client, cluster):
        resume_optimization(client, job_id)
        return wait_optimization(client, job_id, progress, timeout_s,
                                 cluster.check_alive if cluster else None)


def _record(client: Client, job_id: str, config: SearchConfig, state: SearchState,
            status: str, elapsed_s: float = 0.0, redelivered: int = 0) -> None:
    expires_s = client.settings.result_expires_s
    # ``n_chunks`` and ``source`` are what ``lepton status`` shows: generations count as
    # its chunks.
    record_job(client.redis, job_id, {
        "kind": "optimization", "n_chunks": config.generations,
        "source": f"{config.algorithm} on {config.objective} ({config.dim}-D)"}, expires_s)
    write_checkpoint(client.redis, job_id, config.to_json(), *state.to_parts(), status,
                     expires_s, elapsed_s, redelivered)


def _restore_from_file(client: Client, job_id: str) -> bool:
    path = checkpoint_file(client.settings.results_dir, job_id)
    if not path.exists():
        raise JobNotFound(f"no checkpoint of job {job_id} in Redis or at {path}")
    saved = json.loads(path.read_text())
    if saved["status"] == "done":
        return False
    config = SearchConfig.from_json(saved["config"])
    state = SearchState.from_parts(saved["state"], arrays_from_json(saved["arrays"]))
    _record(client, job_id, config, state, "stopped", saved["elapsed_s"], saved["redelivered"])
    logger.info("checkpoint restored from file job=%s generation=%d", job_id,
                state.generation)
    return True


def _poll(client: Client, job_id: str, bar: tqdm) -> dict[str, Any] | None:
    progress = read_progress(client.redis, job_id)
    if progress is None:
        raise JobNotFound(f"the checkpoint of job {job_id} disappeared from Redis")
    bar.update(progress.generation - bar.n)
    if progress.best_f is not None:
        bar.set_postfix_str(f"best={progress.best_f:.6g}", refresh=False)

    if progress.status == "done":
        meta = client.app.backend.get_task_meta(job_id)
        if meta["status"] != "SUCCESS":
            return None
        result = dict(meta["result"])
        if result["best_f"] is not None:
            bar.set_postfix_str(f"best={result['best_f']:.6g}")
        return result
    if progress.status == "failed":
        text = progress.error or "unknown error"
        error = rebuild_error(-1, text)
        raise error if not isinstance(error, JobFailed) else JobFailed(
            f"job {job_id} failed: {text}")
    if progress.status == "stopped":
        raise JobStopped(f"job {job_id} stopped after generation {progress.generation}: "
                         f"run `lepton resume {job_id}` to continue")
    failure = first_failure(client.redis, job_id)
    if failure is not None:
        raise rebuild_error(*failure)
    return None
