"""Optimisation on a private cluster whose worker processes the tests add and kill."""

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producer.client import Client
from producer.local_cluster import LocalCluster, WorkerProcess
from producer.optimization import submit_optimization, wait_optimization
from tasks.errors import ClusterError
from tasks.optimization import FITNESS_TASK
from tests.conftest import make_settings
from tests.test_optimization_cluster import TIMEOUT_S, assert_same_search, in_process

FIND_TASK_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def private_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Redis plus one worker node with a single pool process."""
    root = tmp_path_factory.mktemp("optimization-workers")
    with LocalCluster(make_settings(root), workers=1, log_path=root / "worker.log") as running:
        yield running


@pytest.fixture
def private_client(private_cluster: LocalCluster) -> Iterator[Client]:
    connected = Client(private_cluster.settings)
    yield connected
    connected.close()


def pool_processes(client: Client, names: list[str]) -> int:
    """Return how many pool processes the named worker nodes run together."""
    stats = client.app.control.inspect(destination=names, timeout=2.0).stats() or {}
    return sum(int(node["pool"]["max-concurrency"]) for node in stats.values())


def test_the_same_seed_gives_the_same_bits_with_one_and_three_worker_processes(
        private_cluster: LocalCluster, private_client: Client, tmp_path: Path) -> None:
    request: dict[str, Any] = {"population": 6, "generations": 3, "seed": 31, "batch": 2}
    assert pool_processes(private_client, [private_cluster.worker.name]) == 1
    one = run_slow_job(private_client, request)

    extra = WorkerProcess(private_cluster.settings, 2, f"extra-{os.getpid()}@"
                                                       f"{socket.gethostname()}")
    extra.start(tmp_path / "extra-worker.log")
    try:
        wait_for_processes(private_client, [private_cluster.worker.name, extra.name], 3,
                           extra)
        three = run_slow_job(private_client, request)
    finally:
        extra.stop()

    reference = in_process("pso", "sphere", 2, (-5.0, 5.0), 6, 3, 31)
    assert_same_search(one, reference)
    assert_same_search(three, reference)
    # Three batches of a sleeping objective per generation: three processes overlap them.
    assert three["elapsed_s"] < 0.7 * one["elapsed_s"]


def run_slow_job(client: Client, request: dict[str, Any]) -> dict[str, Any]:
    job_id = submit_optimization(client, "pso", "slow_sphere", 2, **request)
    return wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)


def wait_for_processes(client: Client, names: list[str], wanted: int,
                       extra: WorkerProcess) -> None:
    deadline = time.monotonic() + FIND_TASK_TIMEOUT_S
    while pool_processes(client, names) != wanted:
        extra.check_alive()
        if time.monotonic() > deadline:
            raise ClusterError(f"the cluster did not reach {wanted} pool processes")


def test_a_killed_pool_process_loses_and_double_counts_no_candidate(
        private_cluster: LocalCluster, private_client: Client) -> None:
    job_id = submit_optimization(private_client, "ga", "very_slow_sphere", 2, population=4,
                                 generations=2, seed=41, batch=2)
    victim = running_fitness_pid(private_client, private_cluster.worker.name)
    assert private_cluster.worker.process is not None
    assert victim != private_cluster.worker.process.pid

    os.kill(victim, signal.SIGKILL)
    result = wait_optimization(private_client, job_id, progress=False, timeout_s=TIMEOUT_S)

    assert result["redelivered_batches"] >= 1
    assert result["evaluations"] == 4 * 2
    assert_same_search(result, in_process("ga", "sphere", 2, (-5.0, 5.0), 4, 2, 41))


def running_fitness_pid(client: Client, worker_name: str) -> int:
    """Return the pid of the pool process running a fitness task of ``worker_name``."""
    deadline = time.monotonic() + FIND_TASK_TIMEOUT_S
    while time.monotonic() < deadline:
        active = client.app.control.inspect(destination=[worker_name], timeout=1.0).active()
        for task in (active or {}).get(worker_name, []):
            if task["name"] == FITNESS_TASK and task.get("worker_pid"):
                return int(task["worker_pid"])
    raise ClusterError(f"no fitness task started on {worker_name} within "
                       f"{FIND_TASK_TIMEOUT_S} s")
