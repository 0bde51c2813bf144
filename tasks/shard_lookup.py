"""Celery tasks of shard look-ups: one per owner on its own queue, a merge as chord callback.

Each pool process keeps the shards it has answered for in memory (loaded from the data
root on first use), so repeated look-ups never touch the disk. When a request carries a
newer placement epoch than the process last saw, the process drops the shards its node
no longer owns; the new owner loads them on demand.
"""

import logging
import os
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import redis
from celery import Task, shared_task

import workers.membership  # noqa: F401  (connects the worker signals of membership)
from tasks.data_root import resolve_in_root
from tasks.shard_index import ShardIndex, make_answer, merge_answers
from workers.app import settings_of
from workers.placement_store import read_placement
from workers.progress import mark_chunk_done, record_failure

logger = logging.getLogger(__name__)

# Keys listed in a result's "missing"; the count is always complete.
MAX_REPORTED_MISSING = 100_000

# (shard set, build id, shard) -> the shard in memory; per pool process.
_shards: dict[tuple[str, str, int], ShardIndex] = {}
_seen_epochs: dict[str, int] = {}


class LookupTask(Task):
    """A look-up task whose failure is recorded under its job for the producer to report."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        request = args[0] if args else {}
        if request.get("job_id"):
            record_failure(self.app.backend.client, request["job_id"], request["part"], exc,
                           settings_of(self.app).result_expires_s)


# No "started" state: a look-up lasts milliseconds, and the extra write would cost more.
@shared_task(name="lepton.shard.lookup", bind=True, base=LookupTask, track_started=False)
def shard_lookup(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """Answer the keys of ``request["shards"]`` (each ``{shard, keys, positions}``).

    Returns :func:`tasks.shard_index.make_answer` output plus the answering node.
    """
    settings = settings_of(self.app)
    node = self.request.hostname or "unknown"
    _drop_moved_shards(self.app.backend.client, request, node)

    parts = []
    for part in request["shards"]:
        index = _shard_index(settings.data_root, request, part["shard"])
        parts.append(index.lookup(part["keys"], part["positions"]))
    answer = make_answer(parts)
    answer["node"] = node

    if request.get("job_id"):
        mark_chunk_done(self.app.backend.client, request["job_id"], request["part"],
                        settings.result_expires_s)
    logger.debug("lookup done name=%s node=%s shards=%d keys=%d", request["name"], node,
                 len(parts), sum(len(part["keys"]) for part in request["shards"]))
    return answer


@shared_task(name="lepton.shard.merge", bind=True, track_started=False)
def shard_merge(self: Task, answers: list[dict[str, Any]], job: dict[str, Any]
                ) -> dict[str, Any]:
    """Merge the owners' answers in key order, write ``<job_id>.parquet``, return a summary."""
    table, missing = merge_answers(answers, job["key"], job["n_keys"],
                                   job.get("empty_positions", ()))
    results_dir = settings_of(self.app).results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    final = results_dir / f"{job['job_id']}.parquet"
    temporary = final.with_suffix(f".{os.getpid()}.tmp")
    pq.write_table(table, temporary)
    temporary.replace(final)

    logger.info("lookup merged job=%s name=%s keys=%d rows=%d missing=%d", job["job_id"],
                job["name"], job["n_keys"], table.num_rows, len(missing))
    return {
        "job_id": job["job_id"],
        "kind": "shard-lookup",
        "name": job["name"],
        "key": job["key"],
        "n_keys": job["n_keys"],
        "n_rows": table.num_rows,
        "n_missing": len(missing),
        "missing": missing[:MAX_REPORTED_MISSING],
        "nodes": sorted({answer["node"] for answer in answers}),
        "path": str(final),
        "elapsed_s": round(time.time() - job["submitted_at"], 4),
    }


def _shard_index(data_root: Path, request: dict[str, Any], shard: int) -> ShardIndex:
    cache_key = (request["name"], request["build_id"], shard)
    index = _shards.get(cache_key)
    if index is None:
        relative = f"{request['build_dir']}/shard-{shard:05d}.parquet"
        index = ShardIndex.load(resolve_in_root(relative, data_root), request["key"])
        _shards[cache_key] = index
        logger.debug("shard loaded name=%s shard=%d rows=%d", request["name"], shard,
                     index.table.num_rows)
    return index


def _drop_moved_shards(client: redis.Redis, request: dict[str, Any], node: str) -> None:
    """Forget shards of older builds, and those this node lost at a placement change."""
    name, epoch = request["name"], request["epoch"]
    if _seen_epochs.get(name) == epoch:
        return
    record = read_placement(client, name)
    owned = record.owned_by(node) if record is not None and record.epoch == epoch else None
    for cache_key in [cache_key for cache_key in _shards if cache_key[0] == name]:
        stale_build = cache_key[1] != request["build_id"]
        if stale_build or (owned is not None and cache_key[2] not in owned):
            del _shards[cache_key]
    _seen_epochs[name] = epoch
