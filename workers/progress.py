"""Job progress and task failures, kept in Redis so any process can read them.

Keys (all expire with the results):

- ``lepton:job:<id>``: a hash with the job's kind, chunk count and submit time;
- ``lepton:job:<id>:done``: the set of finished chunk indices (a set, so a chunk
  delivered twice counts once);
- ``lepton:job:<id>:errors``: a hash from chunk index to ``"module.Class: message"``.
"""

import json
import time
from typing import Any

import redis


def job_key(job_id: str) -> str:
    """Return the Redis key of a job's description hash."""
    return f"lepton:job:{job_id}"


def record_job(client: redis.Redis, job_id: str, description: dict[str, Any],
               expires_s: int) -> None:
    """Store what a job is and how many chunks it has when it is submitted."""
    fields: dict[str | bytes, str] = {
        name: json.dumps(value) for name, value in description.items()}
    fields["submitted_at"] = json.dumps(time.time())
    with client.pipeline() as pipe:
        pipe.hset(job_key(job_id), mapping=fields)  # type: ignore[arg-type]
        pipe.expire(job_key(job_id), expires_s)
        pipe.execute()


def read_job(client: redis.Redis, job_id: str) -> dict[str, Any] | None:
    """Return the stored description of a job, or None when it is unknown."""
    fields = client.hgetall(job_key(job_id))
    if not fields:
        return None
    return {_text(key): json.loads(value) for key, value in fields.items()}


def mark_chunk_done(client: redis.Redis, job_id: str, chunk_index: int,
                    expires_s: int) -> None:
    """Record that a chunk's map task finished."""
    with client.pipeline() as pipe:
        pipe.sadd(f"{job_key(job_id)}:done", chunk_index)
        pipe.expire(f"{job_key(job_id)}:done", expires_s)
        pipe.execute()


def count_done(client: redis.Redis, job_id: str) -> int:
    """Return how many distinct chunks of a job have finished."""
    return int(client.scard(f"{job_key(job_id)}:done"))


def record_failure(client: redis.Redis, job_id: str, chunk_index: int,
                   error: BaseException, expires_s: int) -> None:
    """Record why a chunk's task failed, for the producer to report at once."""
    text = f"{type(error).__module__}.{type(error).__name__}: {error}"
    with client.pipeline() as pipe:
        pipe.hset(f"{job_key(job_id)}:errors", str(chunk_index), text)
        pipe.expire(f"{job_key(job_id)}:errors", expires_s)
        pipe.execute()


def first_failure(client: redis.Redis, job_id: str) -> tuple[int, str] | None:
    """Return (chunk index, error text) of the lowest failed chunk, or None."""
    errors = client.hgetall(f"{job_key(job_id)}:errors")
    if not errors:
        return None
    by_index = {int(key): _text(value) for key, value in errors.items()}
    index = min(by_index)
    return index, by_index[index]


def read_failures(client: redis.Redis, job_id: str) -> dict[int, str]:
    """Return every recorded failure of a job: chunk index to ``"module.Class: message"``."""
    errors = client.hgetall(f"{job_key(job_id)}:errors")
    return {int(key): _text(value) for key, value in sorted(
        errors.items(), key=lambda item: int(item[0]))}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
