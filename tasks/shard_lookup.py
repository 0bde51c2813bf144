"""Celery tasks of shard look-ups: one per owner on its own queue, a merge as chord callback.

Each pool process keeps the shards it has answered for in memory (loaded from the data
root on first use), so repeated look-ups never touch the disk. When a request carries a
newer placement epoch than the process last saw, the process drops the shards its node
no longer owns; the new owner loads them on demand.
"""

import logging
import time
from pathlib import Path
from typing import Any

import redis
from celery import Task, shared_task
from pyarrow import feather

import workers.membership  # noqa: F401  (connects the worker signals of membership)
from tasks.data_root import resolve_in_root
from tasks.result_files import write_atomically
from tasks.shard_index import (
    ShardIndex,
    answer_ask,
    merge_answers,
    table_from_text,
    table_to_text,
)
from workers.app import settings_of
from workers.lookup_payloads import answer_key, ask_key, fetch_tables, store_tables
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
    """Answer one ask (see :mod:`tasks.shard_index`) from the shards held in memory.

    The ask comes inline (``request["ask"]``, base64) or from Redis
    (``request["ask_key"]``); the answer goes back the same way.
    """
    settings = settings_of(self.app)
    client = self.app.backend.client
    node = self.request.hostname or "unknown"
    _drop_moved_shards(client, request, node)

    if "ask_key" in request:
        ask = fetch_tables(client, [request["ask_key"]])[0]
    else:
        ask = table_from_text(request["ask"])
    answer = answer_ask(ask, lambda shard: _shard_index(settings.data_root, request, shard))

    reply: dict[str, Any] = {"node": node, "part": request["part"], "rows": answer.num_rows}
    if request.get("job_id"):
        reply["answer_key"] = answer_key(request["job_id"], request["part"])
        store_tables(client, {reply["answer_key"]: answer}, settings.visibility_timeout_s)
        mark_chunk_done(client, request["job_id"], request["part"], settings.result_expires_s)
    else:
        reply["answer"] = table_to_text(answer)
    logger.debug("lookup done name=%s node=%s keys=%d rows=%d", request["name"], node,
                 ask.num_rows, answer.num_rows)
    return reply


@shared_task(name="lepton.shard.merge", bind=True, track_started=False)
def shard_merge(self: Task, replies: list[dict[str, Any]], job: dict[str, Any]
                ) -> dict[str, Any]:
    """Merge the owners' answers in key order, write ``<job_id>.arrow``, return a summary.

    The rows are written as an uncompressed Arrow IPC (Feather) file, which takes a
    fraction of Parquet's time to write and to read back.
    """
    client = self.app.backend.client
    keys = [reply["answer_key"] for reply in sorted(replies, key=lambda reply: reply["part"])]
    answers = fetch_tables(client, keys)
    table, missing = merge_answers(answers, job["key"], job["key_type"], job["n_keys"],
                                   job["empty_positions"])
    final = settings_of(self.app).results_dir / f"{job['job_id']}.arrow"
    write_atomically(final, lambda temporary: feather.write_feather(
        table, temporary, compression="uncompressed"))
    client.delete(*keys, *[ask_key(job["job_id"], part) for part in range(job["n_parts"])])

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
        "nodes": sorted({reply["node"] for reply in replies}),
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
