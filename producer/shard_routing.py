"""Cut a list of keys into asks, one or more per owning worker node."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasks.placement import KeyValue, shards_of
from tasks.shard_index import KEY_COLUMN, POSITION_COLUMN, SHARD_COLUMN, key_arrow_type
from tasks.sharding import Manifest
from workers.placement_store import PlacementRecord

# Bounds one task's work, and gives a long look-up several parts to show progress on.
MAX_KEYS_PER_ASK = 100_000


@dataclass(frozen=True)
class RoutedAsk:
    """The keys one look-up task asks of one owner (see :mod:`tasks.shard_index`)."""

    owner: str
    ask: pa.Table


def route_keys(manifest: Manifest, placement: PlacementRecord,
               keys: Sequence[KeyValue | None], max_keys: int = MAX_KEYS_PER_ASK
               ) -> tuple[list[RoutedAsk], list[int]]:
    """Return (asks, positions of empty keys) for ``keys``, a list of the set's key type.

    Each ask holds, sorted by shard, the keys an owner is asked and their positions in
    ``keys``; positions let the merge restore the caller's order. Empty keys (None) are
    not sent.
    """
    present = np.fromiter((key is not None for key in keys), dtype=bool, count=len(keys))
    positions = np.flatnonzero(present)
    asked = [key for key in keys if key is not None]
    shards = shards_of(asked, manifest.shard_count)  # type: ignore[arg-type]
    member_index = {name: index for index, name in enumerate(placement.members)}
    owner_of_shard = np.array([member_index[owner] for owner in placement.owners])
    owners = owner_of_shard[shards] if len(shards) else np.empty(0, dtype=np.int64)

    # By owner, then shard; a stable sort keeps each shard's keys in caller order.
    order = np.lexsort((shards, owners))
    key_array = pa.array(asked, type=key_arrow_type(manifest.key_type)).take(pa.array(order))
    ask = pa.table({
        SHARD_COLUMN: pa.array(shards[order].astype(np.int32)),
        KEY_COLUMN: key_array,
        POSITION_COLUMN: pa.array(positions[order]),
    })
    sorted_owners = owners[order]
    routed = []
    for member in np.unique(sorted_owners).tolist():
        start, stop = np.searchsorted(sorted_owners, [member, member + 1])
        for first in range(int(start), int(stop), max_keys):
            length = min(max_keys, int(stop) - first)
            routed.append(RoutedAsk(placement.members[member], ask.slice(first, length)))
    return routed, np.flatnonzero(~present).tolist()
