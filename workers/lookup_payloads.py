"""Look-up asks and answers kept in Redis as Arrow bytes, so task messages stay small.

A 10,000-key look-up moves about half a megabyte of keys and rows. Inside JSON messages
that payload would be base64-encoded, copied into the task's stored result and its chord
list, and decoded several times over; as Redis values it is written once and read once.
Messages carry only the keys below, which expire after ``LEPTON_VISIBILITY_TIMEOUT_S``
(the longest a message can wait for redelivery) if a look-up is abandoned.

- ``lepton:lookup:<job_id>:<part>:ask``: the keys asked of one owner;
- ``lepton:lookup:<job_id>:<part>:answer``: that owner's answer.
"""

from collections.abc import Sequence

import pyarrow as pa
import redis

from tasks.errors import JobIncomplete
from tasks.shard_index import table_from_bytes, table_to_bytes


def ask_key(job_id: str, part: int) -> str:
    """Return the Redis key of the keys asked in part ``part`` of a look-up."""
    return f"lepton:lookup:{job_id}:{part}:ask"


def answer_key(job_id: str, part: int) -> str:
    """Return the Redis key of the answer to part ``part`` of a look-up."""
    return f"lepton:lookup:{job_id}:{part}:answer"


def store_tables(client: redis.Redis, tables: dict[str, pa.Table], expires_s: int) -> None:
    """Write each table under its key, in one round trip."""
    with client.pipeline(transaction=False) as pipe:
        for key, table in tables.items():
            pipe.set(key, table_to_bytes(table), ex=expires_s)
        pipe.execute()


def fetch_tables(client: redis.Redis, keys: Sequence[str]) -> list[pa.Table]:
    """Read the tables stored under ``keys``; raise JobIncomplete if one is gone."""
    values = client.mget(keys) if keys else []
    gone = [key for key, value in zip(keys, values) if value is None]
    if gone:
        raise JobIncomplete(f"look-up data expired or was deleted: {', '.join(gone[:3])}")
    return [table_from_bytes(bytes(value)) for value in values]  # type: ignore[arg-type]
