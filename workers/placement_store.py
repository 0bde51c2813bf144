"""The placement of each shard set, kept in Redis so every producer and worker agrees.

``lepton:shards:<name>:placement`` holds one JSON record: the live members it was
computed for, the owner of every shard, an epoch that grows at each membership change,
and what the last change did (previous members, shards moved, when). The record is
recomputed from the live set by whoever first sees the membership differ, with an
optimistic transaction so that concurrent producers keep one history.
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from tasks.placement import moved_count, place

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class PlacementRecord:
    """Who owns which shard of one shard set, and how the last membership change went."""

    name: str
    shard_count: int
    members: list[str]
    owners: list[str]
    epoch: int
    previous_members: list[str]
    moved: int
    changed_at: float

    def owned_by(self, member: str) -> set[int]:
        """Return the shards ``member`` owns."""
        return {shard for shard, owner in enumerate(self.owners) if owner == member}


def placement_key(name: str) -> str:
    """Return the Redis key of shard set ``name``'s placement record."""
    return f"lepton:shards:{name}:placement"


def read_placement(client: redis.Redis, name: str) -> PlacementRecord | None:
    """Return the stored placement of ``name``, or None if none was computed yet."""
    return _parse(client.get(placement_key(name)))


def current_placement(client: redis.Redis, name: str, shard_count: int,
                      members: list[str]) -> PlacementRecord:
    """Return the placement for ``members``, recomputing and storing it if they changed.

    The new placement starts from the stored one (see :func:`tasks.placement.place`),
    so only the shards whose owner must change move.
    """
    key = placement_key(name)
    members = sorted(members)
    for _ in range(MAX_ATTEMPTS):
        with client.pipeline() as pipe:
            try:
                pipe.watch(key)
                stored = _parse(pipe.get(key))
                if (stored is not None and stored.members == members
                        and stored.shard_count == shard_count):
                    return stored
                record = _next_record(name, shard_count, members, stored)
                pipe.multi()
                pipe.set(key, json.dumps(asdict(record)))
                pipe.execute()
            except redis.WatchError:
                continue
        logger.info("placement changed name=%s epoch=%d members=%d moved=%d", name,
                    record.epoch, len(members), record.moved)
        return record
    raise redis.RedisError(f"placement of {name} kept changing under {MAX_ATTEMPTS} attempts")


def _next_record(name: str, shard_count: int, members: list[str],
                 stored: PlacementRecord | None) -> PlacementRecord:
    same_shape = stored is not None and stored.shard_count == shard_count
    previous = stored.owners if stored is not None and same_shape else None
    owners = place(shard_count, members, previous)
    return PlacementRecord(
        name=name, shard_count=shard_count, members=members, owners=owners,
        epoch=(stored.epoch + 1) if stored is not None else 1,
        previous_members=stored.members if stored is not None else [],
        moved=moved_count(previous, owners) if previous is not None else 0,
        changed_at=time.time(),
    )


def _parse(raw: Any) -> PlacementRecord | None:
    if raw is None:
        return None
    return PlacementRecord(**json.loads(raw))
