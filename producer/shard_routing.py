"""Cut a list of keys into look-up requests, one or more per owning worker node."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.placement import KeyValue, shards_of
from tasks.sharding import Manifest
from workers.placement_store import PlacementRecord

# Bounds a request's JSON message (about 20 bytes a key) and gives a long look-up
# several parts to show progress on.
MAX_KEYS_PER_REQUEST = 50_000


@dataclass(frozen=True)
class RoutedRequest:
    """One look-up task: the node whose queue it goes to, and its JSON argument."""

    owner: str
    request: dict[str, Any]

    @property
    def n_keys(self) -> int:
        """Keys asked in this request."""
        return sum(len(part["keys"]) for part in self.request["shards"])


def route_keys(manifest: Manifest, placement: PlacementRecord,
               keys: Sequence[KeyValue | None], job_id: str | None,
               max_keys: int = MAX_KEYS_PER_REQUEST) -> tuple[list[RoutedRequest], list[int]]:
    """Return (requests, positions of empty keys) for ``keys``.

    Each request lists, per shard, the keys asked and their positions in ``keys``;
    positions let the merge restore the caller's order. Empty keys (None) are not sent.
    """
    present = [position for position, key in enumerate(keys) if key is not None]
    empty = [position for position, key in enumerate(keys) if key is None]
    asked = [keys[position] for position in present]
    shards = shards_of(asked, manifest.shard_count)  # type: ignore[arg-type]
    order = np.argsort(shards, kind="stable")
    sorted_shards = shards[order]
    starts = np.flatnonzero(np.r_[True, sorted_shards[1:] != sorted_shards[:-1]])
    stops = np.r_[starts[1:], len(order)]

    by_owner: dict[str, list[dict[str, Any]]] = {}
    for start, stop in zip(starts.tolist(), stops.tolist()):
        shard = int(sorted_shards[start])
        indices = order[start:stop].tolist()
        for first in range(0, len(indices), max_keys):
            piece = indices[first:first + max_keys]
            by_owner.setdefault(placement.owners[shard], []).append({
                "shard": shard,
                "keys": [asked[index] for index in piece],
                "positions": [present[index] for index in piece],
            })

    requests: list[RoutedRequest] = []
    for owner in sorted(by_owner):
        for parts in _batches(by_owner[owner], max_keys):
            request = {
                "name": manifest.name, "build_id": manifest.build_id,
                "build_dir": manifest.build_dir, "key": manifest.key,
                "epoch": placement.epoch, "job_id": job_id, "part": len(requests),
                "shards": parts,
            }
            requests.append(RoutedRequest(owner, request))
    return requests, empty


def _batches(parts: list[dict[str, Any]], max_keys: int) -> list[list[dict[str, Any]]]:
    """Group shard parts into batches of at most ``max_keys`` keys each."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for part in parts:
        if batches[-1] and size + len(part["keys"]) > max_keys:
            batches.append([])
            size = 0
        batches[-1].append(part)
        size += len(part["keys"])
    return batches
