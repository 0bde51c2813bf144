"""Stable key hashing and the placement of shards onto live workers.

Keys hash to a stable 64-bit value (never Python's ``hash()``, which is salted per
process), so every producer and worker agrees on a key's shard, whatever its version:

- a string key: the 64-bit BLAKE2b digest of ``b"s"`` and its UTF-8 bytes;
- an integer key (within int64): the splitmix64 finaliser of its 64-bit two's-complement
  value XOR a fixed seed, computed for a whole array at once; the finaliser is a
  bijection with full avalanche, so consecutive integers spread evenly over the shards.

Placement is rendezvous hashing with bounded loads, sticky to the previous placement:

1. every (shard, worker) pair gets a score, a 64-bit mix of both stable hashes, and a
   shard prefers the workers that score it highest;
2. each live worker gets a target of ``floor(S / N)`` or ``ceil(S / N)`` shards, so the
   most-loaded worker holds at most ``ceil(S / N) / (S / N)`` times the mean (1.0625 at
   S = 1024 and N = 64);
3. starting from the previous placement, a departed worker's shards are freed, a worker
   above its target frees the shards it scores lowest, and the freed shards go, best
   score first, to the workers still below their target.

Why not a stateless scheme: a ring with virtual nodes, plain rendezvous hashing or a
stateless bounded-load ring all leave one worker with the Poisson spread of the shard
count (mean 16 at S = 1024, N = 64, so the fullest worker holds about 1.6x the mean).
Capping the load at 1.15x the mean fixes the balance but, measured on 4 to 64 workers,
makes one worker joining move 2.4 to 3.2 times the minimum of 1 / (N + 1) of the shards,
because freed capacity pulls overflowed shards back in chains. Keeping the previous
placement moves only what balance requires: a joining worker takes exactly its target
from the others, and a leaving worker's shards go to the others and nothing else moves.
The first placement, with no previous one, is the greedy rendezvous assignment under
the same targets, so it depends on the member set alone.
"""

import functools
import hashlib
from collections.abc import Sequence

import numpy as np

from tasks.errors import NoLiveWorkers

# splitmix64 finaliser constants: a bijective mixer of 64-bit integers.
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
# The golden-ratio increment of splitmix64; keeps the key 0 from hashing to 0.
_INTEGER_SEED = np.uint64(0x9E3779B97F4A7C15)

KeyValue = int | str


def stable_hash(data: bytes) -> int:
    """Return the 64-bit BLAKE2b digest of ``data`` as an unsigned integer."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def key_bytes(key: str) -> bytes:
    """Return the canonical bytes of a string key: a type tag, then its UTF-8 encoding."""
    if not isinstance(key, str):
        raise TypeError(f"key_bytes takes a string key, not {type(key).__name__}")
    return b"s" + key.encode("utf-8")


def mix64(values: np.ndarray) -> np.ndarray:
    """Return the splitmix64 finaliser of uint64 ``values`` (any shape), as uint64."""
    mixed = np.array(values, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed ^= mixed >> np.uint64(30)
        mixed *= _MIX_1
        mixed ^= mixed >> np.uint64(27)
        mixed *= _MIX_2
        mixed ^= mixed >> np.uint64(31)
    return mixed


def key_hash(key: KeyValue) -> int:
    """Return the stable 64-bit hash of an integer or string key (see the module docstring)."""
    if isinstance(key, str):
        return stable_hash(key_bytes(key))
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return int(_integer_hashes(np.array([key], dtype=np.int64))[0])
    raise TypeError(f"keys must be integers or strings, not {type(key).__name__}")


def shard_of(key: KeyValue, shard_count: int) -> int:
    """Return the shard in ``[0, shard_count)`` that holds ``key``."""
    return key_hash(key) % shard_count


def shards_of(keys: Sequence[KeyValue], shard_count: int) -> np.ndarray:
    """Return the shard of every key, an int64 array of shape (len(keys),).

    Equal to ``[shard_of(key, shard_count) for key in keys]``; integer keys are hashed
    as one array, string keys one digest per distinct key.
    """
    if all(type(key) is int for key in keys):
        hashes = _integer_hashes(np.array(keys, dtype=np.int64))
    elif all(type(key) is str for key in keys):
        strings: Sequence[str] = keys  # type: ignore[assignment]
        distinct = list(dict.fromkeys(strings)) if len(set(strings)) < len(strings) else strings
        blake2b = hashlib.blake2b
        digests = b"".join([blake2b(b"s" + key.encode("utf-8"), digest_size=8).digest()
                            for key in distinct])
        hashes = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
        if distinct is not keys:
            of_distinct = dict(zip(distinct, hashes.tolist()))
            hashes = np.array([of_distinct[key] for key in strings], dtype=np.uint64)
    else:
        hashes = np.array([key_hash(key) for key in keys], dtype=np.uint64)
    return (hashes % np.uint64(shard_count)).astype(np.int64)


def shards_of_int64(keys: np.ndarray, shard_count: int) -> np.ndarray:
    """Return the shard of every key of an int64 array, int64 of the same shape."""
    hashes = _integer_hashes(np.asarray(keys, dtype=np.int64))
    return (hashes % np.uint64(shard_count)).astype(np.int64)


def _integer_hashes(values: np.ndarray) -> np.ndarray:
    """Hash an int64 array: splitmix64 of the two's-complement bits XOR a fixed seed."""
    return mix64(values.view(np.uint64) ^ _INTEGER_SEED)


def scores(shard_count: int, members: Sequence[str]) -> np.ndarray:
    """Return the rendezvous score of every (shard, member) pair, uint64 (S, N)."""
    shard_hashes = _shard_hashes(shard_count)
    member_hashes = np.array([stable_hash(b"member:" + name.encode()) for name in members],
                             dtype=np.uint64)
    return mix64(shard_hashes[:, None] ^ member_hashes[None, :])


@functools.lru_cache(maxsize=16)
def _shard_hashes(shard_count: int) -> np.ndarray:
    hashes = np.array([stable_hash(b"shard:%d" % shard) for shard in range(shard_count)],
                      dtype=np.uint64)
    hashes.setflags(write=False)
    return hashes


def place(shard_count: int, members: Sequence[str],
          previous: Sequence[str | None] | None = None) -> list[str]:
    """Return the owner of every shard, a list of ``shard_count`` member names.

    ``previous`` is the last placement (one owner per shard) or None; owners no longer
    in ``members`` are ignored. The result depends only on its arguments.
    """
    if shard_count < 1:
        raise ValueError(f"shard_count must be at least 1, got {shard_count}")
    names = sorted(set(members))
    if not names:
        raise NoLiveWorkers("no live workers to own shards: start a worker "
                            "(lepton worker) or check LEPTON_BROKER_URL")
    column = {name: index for index, name in enumerate(names)}
    table = scores(shard_count, names)

    owner = np.full(shard_count, -1, dtype=np.int64)
    if previous is not None and len(previous) == shard_count:
        owner[:] = [column.get(name, -1) if name else -1 for name in previous]
    targets = _targets(owner, len(names), table)
    _free_excess(owner, targets, table)
    _assign_free(owner, targets, table)
    return [names[index] for index in owner]


def moved_count(before: Sequence[str | None], after: Sequence[str]) -> int:
    """Return how many shards changed owner between two placements of equal length."""
    return sum(1 for old, new in zip(before, after) if old != new)


def balance(owners: Sequence[str], members: Sequence[str]) -> float:
    """Return the most-loaded member's shard count over the mean count (1.0 is perfect)."""
    counts = {name: 0 for name in members}
    for name in owners:
        counts[name] = counts.get(name, 0) + 1
    return max(counts.values()) / (len(owners) / len(counts))


def _targets(owner: np.ndarray, member_count: int, table: np.ndarray) -> np.ndarray:
    """Give ``ceil(S/N)`` to the members holding most already, ``floor(S/N)`` to the rest."""
    base, extra = divmod(len(owner), member_count)
    held = np.bincount(owner[owner >= 0], minlength=member_count)
    # Ties between equally loaded members are broken by a stable per-member value.
    tie_break = table[0] if len(table) else np.zeros(member_count, dtype=np.uint64)
    order = np.lexsort((tie_break, -held))
    targets = np.full(member_count, base, dtype=np.int64)
    targets[order[:extra]] += 1
    return targets


def _free_excess(owner: np.ndarray, targets: np.ndarray, table: np.ndarray) -> None:
    """Free the lowest-scoring shards of every member above its target."""
    for member, target in enumerate(targets):
        held = np.flatnonzero(owner == member)
        if len(held) > target:
            by_score = held[np.argsort(table[held, member], kind="stable")]
            owner[by_score[:len(held) - target]] = -1


def _assign_free(owner: np.ndarray, targets: np.ndarray, table: np.ndarray) -> None:
    """Give every free shard to a member with room, best (shard, member) score first."""
    free = np.flatnonzero(owner < 0)
    room = targets - np.bincount(owner[owner >= 0], minlength=len(targets))
    open_members = np.flatnonzero(room > 0)
    if len(free) == 0:
        return
    pair_scores = table[np.ix_(free, open_members)]
    order = np.argsort(pair_scores, axis=None, kind="stable")[::-1]
    remaining = len(free)
    for flat in order.tolist():
        row, col = divmod(flat, len(open_members))
        shard, member = free[row], open_members[col]
        if owner[shard] < 0 and room[member] > 0:
            owner[shard] = member
            room[member] -= 1
            remaining -= 1
            if remaining == 0:
                break
