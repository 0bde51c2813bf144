"""Shard placement balances load and moves few shards when a worker joins or leaves."""

import hashlib

import numpy as np
import pytest

from tasks.errors import NoLiveWorkers
from tasks.placement import balance, key_bytes, moved_count, place, shard_of, shards_of

SHARDS = 1024


def node_names(rng: np.random.Generator, count: int) -> list[str]:
    """Worker node names of the kind Celery uses, with random parts."""
    return [f"w{int(rng.integers(10**9))}@host-{int(rng.integers(10**4))}"
            for _ in range(count)]


@pytest.fixture(scope="module")
def names() -> list[str]:
    return node_names(np.random.default_rng(20261204), 65)


def test_most_loaded_worker_holds_at_most_1_15_times_the_mean(names: list[str]) -> None:
    for count in range(4, 65):
        owners = place(SHARDS, names[:count])
        assert set(owners) == set(names[:count])
        assert balance(owners, names[:count]) <= 1.15, count


def test_adding_a_worker_moves_at_most_1_5_over_n_plus_1_of_the_shards(
        names: list[str]) -> None:
    for count in range(4, 64):
        before = place(SHARDS, names[:count])
        after = place(SHARDS, names[:count + 1], before)
        moved = moved_count(before, after)
        assert moved <= 1.5 * SHARDS / (count + 1), count
        # Every moved shard went to the new worker: nothing shuffles between old ones.
        assert all(new == names[count] for old, new in zip(before, after) if old != new)


def test_removing_a_worker_moves_at_most_2_over_n_of_the_shards(names: list[str]) -> None:
    rng = np.random.default_rng(7)
    for count in range(5, 65):
        members = names[:count]
        gone = members[int(rng.integers(count))]
        before = place(SHARDS, members)
        after = place(SHARDS, [name for name in members if name != gone], before)
        assert moved_count(before, after) <= 2 * SHARDS / count, count
        assert gone not in after


def test_a_long_run_of_joins_and_leaves_stays_balanced_and_moves_little() -> None:
    rng = np.random.default_rng(11)
    pool = node_names(rng, 216)
    members = pool[:16]
    owners = place(SHARDS, members)
    for step in range(200):
        before_count = len(members)
        if before_count > 4 and (before_count >= 64 or rng.random() < 0.5):
            gone = members[int(rng.integers(before_count))]
            members = [name for name in members if name != gone]
            bound = 2 * SHARDS / before_count
        else:
            members = members + [pool[16 + step]]
            bound = 1.5 * SHARDS / len(members)
        after = place(SHARDS, members, owners)
        assert moved_count(owners, after) <= bound, step
        assert balance(after, members) <= 1.15, step
        owners = after


def test_placement_depends_only_on_its_arguments(names: list[str]) -> None:
    first = place(SHARDS, names[:10])
    again = place(SHARDS, list(reversed(names[:10])))
    assert first == again
    assert place(SHARDS, names[:11], first) == place(SHARDS, names[:11], again)


def test_more_workers_than_shards_leaves_some_workers_without_shards(names: list[str]) -> None:
    owners = place(4, names[:10])
    assert sorted(np.unique(owners, return_counts=True)[1].tolist()) == [1, 1, 1, 1]


def test_no_live_workers_is_refused_with_a_clear_message() -> None:
    with pytest.raises(NoLiveWorkers, match="no live workers"):
        place(SHARDS, [])


def splitmix64_reference(value: int) -> int:
    """The splitmix64 finaliser written with Python integers, modulo 2**64."""
    mask = 2**64 - 1
    value &= mask
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & mask
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & mask
    return value ^ (value >> 31)


def test_string_keys_hash_by_blake2b_of_their_tagged_utf8_bytes() -> None:
    digest = hashlib.blake2b("sN10156é".encode(), digest_size=8).digest()
    assert shard_of("N10156é", 1000) == int.from_bytes(digest, "big") % 1000
    assert key_bytes("N10156") == b"sN10156"


def test_integer_keys_hash_by_splitmix64_of_their_two_complement_bits() -> None:
    seed = 0x9E3779B97F4A7C15
    for key in (0, 1, 12345, -1, -(2**63), 2**63 - 1):
        expected = splitmix64_reference((key & (2**64 - 1)) ^ seed) % 1000
        assert shard_of(key, 1000) == expected, key
    assert shard_of(np.int32(12345), 1000) == shard_of(12345, 1000)
    assert shard_of(7, 2**20) != shard_of("7", 2**20)
    with pytest.raises(TypeError):
        shard_of(1.5, 10)  # type: ignore[arg-type]


def test_consecutive_integer_keys_spread_evenly_over_the_shards() -> None:
    counts = np.bincount(shards_of(list(range(64_000)), 64), minlength=64)
    # Binomial(64000, 1/64) has a standard deviation of about 31 around 1000.
    assert counts.min() > 850 and counts.max() < 1150


def test_vectorised_shards_equal_one_key_at_a_time() -> None:
    rng = np.random.default_rng(3)
    integers = rng.integers(-10**12, 10**12, 500).tolist()
    strings = [f"key-{value}" for value in rng.integers(0, 50, 500)]  # many repeats
    for keys in (integers, strings):
        assert shards_of(keys, 97).tolist() == [shard_of(key, 97) for key in keys]
