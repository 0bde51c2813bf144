"""Worker nodes joining, leaving and dying keep look-ups answered; only owed shards move.

These tests run a private cluster of single-process worker nodes with a short heartbeat,
since they add, stop and kill nodes.
"""

import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from producer.local_cluster import WorkerProcess
from producer.node_cluster import NodeCluster
from producer.shard_client import ShardClient
from tasks.placement import shard_of
from tests.conftest import make_settings
from workers.app import create_app
from workers.settings import Settings

HEARTBEAT_S = 0.2
MEMBER_TIMEOUT_S = 1.0
SHARDS = 24
ROWS = 2000
WAIT_S = 30


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(42)
    return pd.DataFrame({"key": rng.permutation(ROWS) * 3, "value": rng.normal(size=ROWS)})


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    root = tmp_path_factory.mktemp("membership-root")
    base = make_settings(root)
    settings = Settings.from_env({**base.as_env(),
                                  "LEPTON_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S),
                                  "LEPTON_MEMBER_TIMEOUT_S": str(MEMBER_TIMEOUT_S)})
    with NodeCluster(settings, nodes=2, log_dir=tmp_path_factory.mktemp("node-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def shards(nodes: NodeCluster, frame: pd.DataFrame) -> Iterator[ShardClient]:
    with ShardClient(nodes.settings, nodes.check_alive) as shard_client:
        frame.to_parquet(nodes.settings.data_root / "numbers.parquet")
        shard_client.build(nodes.settings.data_root / "numbers.parquet", "key", SHARDS,
                           progress=False)
        yield shard_client


def keys_owned_by(shards: ShardClient, node: str, count: int) -> list[int]:
    """Stored keys (and one missing) whose shards ``node`` owns now."""
    owners = shards.info("numbers")
    assert node in owners["members"]
    placement = shards.placement("numbers")
    owned = [key for key in range(0, 3 * ROWS, 3)
             if placement.owners[shard_of(key, SHARDS)] == node]
    missing = next(key for key in range(1, 3 * ROWS, 3)
                   if placement.owners[shard_of(key, SHARDS)] == node)
    return owned[:count] + [missing]


def assert_answers_equal_merge(shards: ShardClient, frame: pd.DataFrame,
                               keys: list[int]) -> list[str]:
    expected = pd.DataFrame({"key": keys}).merge(frame, on="key", how="left")
    got = shards.lookup("numbers", keys, timeout_s=WAIT_S, progress=False)
    pd.testing.assert_frame_equal(got.frame, expected, check_dtype=False)
    single = shards.get("numbers", keys[:3], timeout_s=WAIT_S)
    pd.testing.assert_frame_equal(single.frame, expected.iloc[:3], check_dtype=False)
    return got.nodes


def test_every_owner_answers_and_repeated_lookups_come_from_memory(
        nodes: NodeCluster, shards: ShardClient, frame: pd.DataFrame) -> None:
    keys = list(range(0, 3 * ROWS, 5))
    answering = assert_answers_equal_merge(shards, frame, keys)
    assert answering == sorted(nodes.nodes)

    build_dir = nodes.settings.data_root / shards.manifest("numbers").build_dir
    hidden = build_dir.with_name("hidden")
    shutil.move(build_dir, hidden)
    try:
        assert_answers_equal_merge(shards, frame, keys)
    finally:
        shutil.move(hidden, build_dir)


def test_a_joining_node_takes_only_its_share_and_answers(
        nodes: NodeCluster, shards: ShardClient, frame: pd.DataFrame) -> None:
    before = shards.info("numbers")
    members = len(before["members"])

    joined = nodes.add_node()
    after = shards.info("numbers")

    assert joined in after["members"] and after["epoch"] == before["epoch"] + 1
    assert after["moved_at_last_change"] == after["owners"][joined]["shards"]
    assert after["moved_at_last_change"] <= 1.5 * SHARDS / (members + 1)
    assert after["balance"] <= 1.15
    assert joined in assert_answers_equal_merge(shards, frame, keys_owned_by(shards, joined, 40))


def test_a_node_that_stops_cleanly_hands_its_shards_over_at_once(
        nodes: NodeCluster, shards: ShardClient, frame: pd.DataFrame) -> None:
    if nodes.workers < 2:
        nodes.add_node()
    leaving = sorted(nodes.nodes)[0]
    keys = keys_owned_by(shards, leaving, 40)
    members = len(shards.info("numbers")["members"])

    nodes.stop_node(leaving)
    started = time.monotonic()
    answering = assert_answers_equal_merge(shards, frame, keys)

    assert leaving not in answering
    # A clean stop leaves the live set at once: no waiting for the heartbeat timeout.
    assert time.monotonic() - started < MEMBER_TIMEOUT_S + 5
    info = shards.info("numbers")
    assert leaving not in info["members"]
    assert info["moved_at_last_change"] <= 2 * SHARDS / members


def test_a_killed_nodes_shards_are_taken_over_after_the_heartbeat_timeout(
        nodes: NodeCluster, shards: ShardClient, frame: pd.DataFrame,
        caplog: pytest.LogCaptureFixture) -> None:
    if nodes.workers < 2:
        nodes.add_node()
    victim = sorted(nodes.nodes)[-1]
    keys = keys_owned_by(shards, victim, 40)

    nodes.kill_node(victim)
    # Asked at once, the dead owner still looks live; the look-up is routed again once
    # its heartbeat ages past the timeout.
    answering = assert_answers_equal_merge(shards, frame, keys)

    assert victim not in answering
    assert any("lookup rerouted" in record.getMessage() and victim in record.getMessage()
               for record in caplog.records)
    info = shards.info("numbers")
    assert victim not in info["members"] and victim not in info["owners"]
    assert sum(owner["shards"] for owner in info["owners"].values()) == SHARDS


def test_shards_live_in_the_data_root_so_nothing_is_lost(nodes: NodeCluster,
                                                         shards: ShardClient,
                                                         frame: pd.DataFrame) -> None:
    keys = frame["key"].tolist()
    result = shards.lookup("numbers", keys, timeout_s=WAIT_S, progress=False)
    assert result.n_missing == 0 and len(result.frame) == ROWS
    assert Path(nodes.settings.data_root / "lepton-shards" / "numbers").is_dir()


def test_a_worker_that_does_not_consume_lookups_owns_no_shards(nodes: NodeCluster,
                                                               shards: ShardClient) -> None:
    settings = replace(nodes.settings, worker_queues=("map",))
    bystander = WorkerProcess(settings, 1, "map-only@localhost")
    bystander.start()
    app = create_app(settings)
    try:
        deadline = time.monotonic() + WAIT_S
        while not app.control.ping(destination=[bystander.name], timeout=0.3):
            bystander.check_alive()
            assert time.monotonic() < deadline, "the map-only worker did not start"
        # A member beats in worker_ready, before its consumer answers the first ping.

        assert bystander.name not in shards.info("numbers")["members"]
    finally:
        app.close()
        bystander.stop()
