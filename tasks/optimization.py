"""Celery tasks of the optimisation job: each generation is one chord.

The header's fitness tasks each read a batch of candidates from the checkpoint and score
it; the callback assembles the fitness, takes the algorithm's step (:mod:`tasks.search`),
checkpoints the new state in Redis (:mod:`workers.checkpoints`) and enqueues the next
generation's chord, or writes the result. Both run on the ``fitness`` queue, and the
search needs no producer.
"""

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
from celery import Celery, Task, chord, shared_task

from tasks.arrays import FLOAT64, decode_array, encode_array
from tasks.errors import JobIncomplete, JobNotFound
from tasks.objectives import evaluate, get_objective
from tasks.result_files import write_json, write_result
from tasks.search import SearchConfig, SearchState, advance, summarise
from workers.app import settings_of
from workers.checkpoints import (
    Checkpoint,
    advance_checkpoint,
    fetch_batch,
    mark_dispatched,
    mark_failed,
    mark_file_saved,
    read_checkpoint,
)
from workers.progress import record_failure

logger = logging.getLogger(__name__)

FITNESS_TASK = "lepton.optimization.fitness"
FLOAT64_BYTES = 8
GENERATION_TASK = "lepton.optimization.generation"

# A copy of the checkpoint goes to the results directory at most this often (and when
# the job stops or ends), so a job outlives its Redis. Any older copy resumes to the
# same result, because every generation is a function of the seed and its parent.
FILE_CHECKPOINT_INTERVAL_S = 5.0


class FitnessTask(Task):
    """Records why a fitness task failed, so the watcher reports it at once."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        job, batch = args[0], args[1]
        client = self.app.backend.client
        record_failure(client, job["job_id"], batch["index"], exc,
                       settings_of(self.app).result_expires_s)
        mark_failed(client, job["job_id"], exc)


class GenerationTask(Task):
    """Marks the job failed when its generation callback fails."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        client = self.app.backend.client
        record_failure(client, kwargs["job_id"], kwargs["generation"], exc,
                       settings_of(self.app).result_expires_s)
        mark_failed(client, kwargs["job_id"], exc)


@shared_task(name=FITNESS_TASK, bind=True, base=FitnessTask, track_started=False)
def score_batch(self: Task, job: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """Score one batch of candidates; return its index, fitness and failures.

    The result is the same whichever worker computes it and however often, so a batch
    that runs twice (its first worker died) is counted once by the chord.
    """
    settings = settings_of(self.app)
    start, stop = batch["rows"]
    row_bytes = job["dim"] * FLOAT64_BYTES
    raw = fetch_batch(self.app.backend.client, job["job_id"], batch["generation"],
                      batch["index"], (start * row_bytes, stop * row_bytes),
                      settings.result_expires_s)
    if raw is None:
        logger.info("stale fitness task ignored job=%s generation=%d batch=%d",
                    job["job_id"], batch["generation"], batch["index"])
        return {"index": batch["index"], "stale": True}
    if len(raw) != (stop - start) * row_bytes:
        raise JobIncomplete(f"job {job['job_id']}: generation {batch['generation']} holds "
                            f"{len(raw) // row_bytes} candidates, not rows {start}-{stop}")
    candidates = np.frombuffer(raw, dtype=FLOAT64).reshape(stop - start, job["dim"]).copy()
    objective = get_objective(job["objective"], settings.objectives_module)

    evaluation = evaluate(objective, candidates, settings.data_root)
    invalid = int(evaluation.invalid.sum())
    if invalid:
        logger.warning("invalid candidates job=%s generation=%d batch=%d count=%d first=%s",
                       job["job_id"], batch["generation"], batch["index"], invalid,
                       evaluation.first_error)
    return {"index": batch["index"], "fitness": encode_array(evaluation.values),
            "invalid": invalid, "first_error": evaluation.first_error}


@shared_task(name=GENERATION_TASK, bind=True, base=GenerationTask, track_started=False)
def finish_generation(self: Task, batch_results: list[dict[str, Any]], *, job_id: str,
                      generation: int) -> dict[str, Any]:
    """Advance the job past ``generation`` once, then enqueue the next one or finish."""
    settings = settings_of(self.app)
    client = self.app.backend.client
    checkpoint = read_checkpoint(client, job_id)
    if checkpoint is None:
        raise JobNotFound(f"job {job_id}: no checkpoint in Redis (expired or deleted)")
    if checkpoint.generation != generation or checkpoint.status != "running":
        _recover_dispatch(self.app, job_id, checkpoint, generation)
        return {"job_id": job_id, "generation": generation, "advanced": False}

    config = SearchConfig.from_json(checkpoint.config)
    state = SearchState.from_parts(checkpoint.state, checkpoint.arrays)
    fitness, invalid = assemble_fitness(batch_results, config, job_id, generation)
    following = advance(config, state, fitness, invalid)
    elapsed_s = checkpoint.elapsed_s + max(0.0, time.time() - checkpoint.updated_at)

    if following.stop_reason is not None:
        result = {"job_id": job_id, **summarise(config, following),
                  "elapsed_s": round(elapsed_s, 3),
                  "redelivered_batches": checkpoint.redelivered}
        write_result(settings.results_dir, result)
        self.app.backend.store_result(job_id, result, "SUCCESS")
    status = advance_checkpoint(client, job_id, generation, *following.to_parts(),
                                "done" if following.stop_reason else "running", elapsed_s,
                                settings.result_expires_s)
    if status is None:
        logger.info("duplicate generation ignored job=%s generation=%d", job_id, generation)
        return {"job_id": job_id, "generation": generation, "advanced": False}

    forget_generation(self.app, job_id, config, generation)
    if status == "running":
        dispatch_generation(self.app, job_id, config, following)
    else:
        logger.info("job %s job=%s generations=%d best=%s", status, job_id,
                    following.generation, following.best_f)
    _save_checkpoint_file(settings.results_dir, client, job_id, status, checkpoint)
    return {"job_id": job_id, "generation": generation, "advanced": True, "status": status}


def assemble_fitness(batch_results: list[dict[str, Any]], config: SearchConfig, job_id: str,
                     generation: int) -> tuple[np.ndarray, int]:
    """Return the generation's fitness (P,) in candidate order and its invalid count.

    Raise :class:`JobIncomplete` unless every planned batch arrived, each once (a batch
    repeated with the same values, as a redelivered task gives, counts once).
    """
    by_index: dict[int, dict[str, Any]] = {}
    for result in batch_results:
        if result.get("stale"):
            raise JobIncomplete(f"job {job_id}: generation {generation} batch "
                                f"{result['index']} was scored for another generation")
        earlier = by_index.setdefault(int(result["index"]), result)
        if earlier["fitness"] != result["fitness"]:
            raise JobIncomplete(f"job {job_id}: generation {generation} batch "
                                f"{result['index']} arrived twice with different fitness")
    slices = config.batch_slices()
    missing = sorted(set(range(len(slices))) - set(by_index))
    if missing or len(by_index) != len(slices):
        raise JobIncomplete(f"job {job_id}: generation {generation} is missing batches "
                            f"{missing[:10]} of {len(slices)}")

    parts = [decode_array(by_index[index]["fitness"]) for index in range(len(slices))]
    fitness = np.concatenate(parts)
    if len(fitness) != config.population:
        raise JobIncomplete(f"job {job_id}: generation {generation} has {len(fitness)} "
                            f"fitness values for {config.population} candidates")
    return fitness, sum(int(result["invalid"]) for result in by_index.values())


def dispatch_generation(app: Celery, job_id: str, config: SearchConfig,
                        state: SearchState) -> None:
    """Enqueue the chord that scores ``state.candidates`` and then advances the job.

    The candidates must already be checkpointed: each fitness task reads its own rows
    from Redis, so messages stay small whatever the population.
    """
    job = {"job_id": job_id, "objective": config.objective, "dim": config.dim}
    header = [
        app.signature(FITNESS_TASK, args=(job, {
            "generation": state.generation, "index": index, "rows": [rows.start, rows.stop]}),
            task_id=fitness_task_id(job_id, state.generation, index))
        for index, rows in enumerate(config.batch_slices())
    ]
    callback = app.signature(GENERATION_TASK,
                             kwargs={"job_id": job_id, "generation": state.generation},
                             task_id=generation_task_id(job_id, state.generation))
    chord(header)(callback)
    mark_dispatched(app.backend.client, job_id, state.generation)
    logger.debug("generation dispatched job=%s generation=%d batches=%d", job_id,
                 state.generation, len(header))


def fitness_task_id(job_id: str, generation: int, index: int) -> str:
    """Return the task id of a generation's fitness batch (readable in Flower)."""
    return f"{job_id}.g{generation}.b{index}"


def generation_task_id(job_id: str, generation: int) -> str:
    """Return the task id of the callback that completes a generation."""
    return f"{job_id}.g{generation}.step"


def forget_generation(app: Celery, job_id: str, config: SearchConfig, generation: int) -> None:
    """Delete the stored results of a generation's fitness tasks and of the previous
    callback: the checkpoint holds all that matters, and a long search would otherwise
    keep every generation's candidates in Redis until the results expire."""
    ids = [fitness_task_id(job_id, generation, index)
           for index in range(len(config.batch_slices()))]
    if generation > 0:
        ids.append(generation_task_id(job_id, generation - 1))
    app.backend.client.delete(*[app.backend.get_key_for_task(task_id) for task_id in ids])


def _recover_dispatch(app: Celery, job_id: str, checkpoint: Checkpoint,
                      generation: int) -> None:
    # The checkpoint is already past ``generation``: this is a second delivery. If the
    # first one died after advancing but before enqueueing, nothing else will enqueue
    # the next generation, so do it here.
    if (checkpoint.status == "running" and checkpoint.generation == generation + 1
            and checkpoint.dispatched < checkpoint.generation):
        logger.warning("re-dispatching after an interrupted callback job=%s generation=%d",
                       job_id, checkpoint.generation)
        dispatch_generation(app, job_id, SearchConfig.from_json(checkpoint.config),
                            SearchState.from_parts(checkpoint.state, checkpoint.arrays))
    else:
        logger.info("duplicate generation ignored job=%s generation=%d", job_id, generation)


def checkpoint_file(results_dir: Path, job_id: str) -> Path:
    """Return where the file copy of a job's checkpoint lives."""
    return results_dir / f"{job_id}.checkpoint.json"


def _save_checkpoint_file(results_dir: Path, client: redis.Redis, job_id: str, status: str,
                          before: Checkpoint) -> None:
    if status == "running" and time.time() - before.file_saved_at < FILE_CHECKPOINT_INTERVAL_S:
        return
    current = read_checkpoint(client, job_id)
    if current is not None:
        write_checkpoint_file(results_dir, job_id, current)
        mark_file_saved(client, job_id)


def write_checkpoint_file(results_dir: Path, job_id: str, checkpoint: Checkpoint) -> Path:
    """Write the checkpoint as JSON next to the results, atomically; return the path."""
    return write_json(checkpoint_file(results_dir, job_id), checkpoint.to_json())
