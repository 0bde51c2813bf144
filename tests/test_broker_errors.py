"""A producer that cannot use Redis gets a clear BrokerUnavailable quickly, never a hang."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings

from producer.client import Client
from producer.local_cluster import RedisServer
from producer.shard_client import ShardClient
from producer.status import read_status
from tasks.errors import BrokerUnavailable
from workers.settings import Settings

PASSWORD = "compose-secret-7f3a"
QUICK_S = 3.0


@pytest.fixture(scope="module")
def protected_redis() -> Iterator[RedisServer]:
    """A private redis-server that requires ``PASSWORD`` (no workers: nothing to run)."""
    server = RedisServer(password=PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text("x,y\n1,3\n2,5\n3,7\n")
    return path


def producer_calls(client: Client, dataset: Path) -> dict[str, Callable[[], Any]]:
    return {
        "submit": lambda: client.submit_regression(dataset, "y", ["x"]),
        "wait": lambda: client.wait("some-job", progress=False, timeout_s=30),
        "result": lambda: client.result("some-job"),
        "status": lambda: read_status(client, "some-job"),
    }


def assert_each_fails_quickly(settings: Settings, dataset: Path, pattern: str) -> None:
    client = Client(settings)
    try:
        for name, call in producer_calls(client, dataset).items():
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable, match=pattern) as raised:
                call()
            assert time.monotonic() - started < QUICK_S, name
            assert PASSWORD not in str(raised.value)
    finally:
        client.close()


def test_wrong_password_is_a_clear_error_for_every_producer_call(
        protected_redis: RedisServer, dataset: Path) -> None:
    url = protected_redis.url.replace(PASSWORD, "not-the-password")
    settings = make_settings(dataset.parent).with_broker(url)

    assert_each_fails_quickly(settings, dataset,
                              r"at redis://:\*\*\*@127\.0\.0\.1:\d+/0 refused the password")


def test_wrong_password_is_a_clear_error_for_shard_look_ups(protected_redis: RedisServer,
                                                           tmp_path: Path) -> None:
    (tmp_path / "keys.csv").write_text("key,value\n1,a\n2,b\n3,c\n")
    url = protected_redis.url.replace(PASSWORD, "not-the-password")
    shards = ShardClient(make_settings(tmp_path).with_broker(url))
    try:
        shards.build(tmp_path / "keys.csv", "key", shards=2, name="keys", progress=False)
        for call in (lambda: shards.info("keys"), lambda: shards.get("keys", [1])):
            with pytest.raises(BrokerUnavailable, match="refused the password") as raised:
                call()
            assert PASSWORD not in str(raised.value)
    finally:
        shards.close()


def test_missing_password_says_that_redis_requires_one(protected_redis: RedisServer,
                                                        dataset: Path) -> None:
    url = protected_redis.url.replace(f":{PASSWORD}@", "")
    settings = make_settings(dataset.parent).with_broker(url)

    assert_each_fails_quickly(settings, dataset, "requires a password")


def test_wrong_broker_password_fails_the_publish_without_long_retries(
        protected_redis: RedisServer, dataset: Path) -> None:
    wrong = protected_redis.url.replace(PASSWORD, "not-the-password")
    settings = Settings.from_env({"LEPTON_DATA_ROOT": str(dataset.parent),
                                  "LEPTON_BROKER_URL": wrong,
                                  "LEPTON_RESULT_BACKEND": protected_redis.url})
    client = Client(settings)
    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable, match="refused the password"):
            client.submit_regression(dataset, "y", ["x"])
    finally:
        client.close()

    assert time.monotonic() - started < QUICK_S


def test_server_that_never_answers_times_out_instead_of_hanging(dataset: Path) -> None:
    with socket.socket() as silent:
        # The kernel accepts connections into the backlog; nothing ever replies.
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = Settings.from_env({"LEPTON_DATA_ROOT": str(dataset.parent),
                                      "LEPTON_BROKER_URL": f"redis://127.0.0.1:{port}/0",
                                      "LEPTON_REDIS_TIMEOUT_S": "1"})
        client = Client(settings)
        try:
            for name in ("submit", "result"):
                started = time.monotonic()
                with pytest.raises(BrokerUnavailable, match="did not answer in time"):
                    producer_calls(client, dataset)[name]()
                assert time.monotonic() - started < 5.0, name
        finally:
            client.close()


def test_worker_with_a_wrong_password_exits_at_once_with_a_clear_error(
        tmp_path: Path) -> None:
    server = RedisServer(password="right-password")
    server.start()
    try:
        env = {**os.environ, "LEPTON_DATA_ROOT": str(tmp_path),
               "LEPTON_BROKER_URL": f"redis://:wrong@127.0.0.1:{server.port}/0"}
        done = subprocess.run([sys.executable, "-m", "producer.cli", "worker"], env=env,
                              capture_output=True, text=True, timeout=30)
    finally:
        server.stop()

    assert done.returncode == 1
    assert "refused the worker's password" in done.stderr
    assert ":wrong@" not in done.stderr


def test_waiting_with_no_live_worker_warns_and_keeps_waiting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import producer.client
    from producer.client import JobTimeout

    monkeypatch.setattr(producer.client, "STALL_WARNING_S", 0.5)
    (tmp_path / "idle.csv").write_text("x,y\n1,2\n2,3\n3,5\n")
    server = RedisServer()
    server.start()
    client = Client(make_settings(tmp_path).with_broker(server.url))
    try:
        job_id = client.submit_regression(tmp_path / "idle.csv", "y", ["x"])
        with pytest.raises(JobTimeout):
            client.wait(job_id, progress=False, timeout_s=4)
    finally:
        client.close()
        server.stop()

    assert "no worker answers a ping" in capsys.readouterr().err
