"""The local cluster starts real processes, survives failures loudly, and cleans up."""

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from producer.client import Client
from producer.local_cluster import LocalCluster
from tasks.errors import BrokerUnavailable, ClusterError
from tests.conftest import make_settings
from tests.datasets import synthetic_frame, write_frame


def pid_running_a_map_task(client: Client, node: str, timeout_s: float = 30) -> int:
    """Wait until the node reports a running map task; return its pool process id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active = client.app.control.inspect(destination=[node], timeout=0.5).active() or {}
        running = [task for task in active.get(node, []) if task["name"].endswith(".map")]
        if running:
            return int(running[0]["worker_pid"])
    raise AssertionError("no map task started")


def test_cluster_processes_are_gone_after_the_block(tmp_path: Path) -> None:
    with LocalCluster(make_settings(tmp_path), workers=1) as cluster:
        worker, server = cluster.worker.process, cluster.redis_server.process
        assert worker is not None and server is not None
        assert redis.Redis.from_url(cluster.settings.broker_url or "").ping()

    assert worker.poll() is not None and server.poll() is not None


def test_killed_pool_process_has_its_chunk_run_again(tmp_path: Path) -> None:
    frame = synthetic_frame(np.random.default_rng(8), 3_000_000, features=4)
    path = write_frame(frame, tmp_path / "large.npy")
    log_path = tmp_path / "worker.log"

    with LocalCluster(make_settings(tmp_path), workers=1, log_path=log_path) as cluster:
        client = Client(cluster.settings)
        job_id = client.submit_regression(path, "c4", None, True, 500_000)
        os.kill(pid_running_a_map_task(client, cluster.worker.name), signal.SIGKILL)
        result = client.wait(job_id, progress=False, timeout_s=180)
        client.close()

    values = frame.to_numpy()
    design = np.column_stack([np.ones(len(values)), values[:, :-1]])
    expected, *_ = np.linalg.lstsq(design, values[:, -1], rcond=None)
    np.testing.assert_allclose(result["coefficients"], expected, rtol=1e-9)
    assert result["n_rows"] == 3_000_000 and result["n_chunks"] == 6
    # The kill landed on a running task, which Celery then re-queued.
    assert "WorkerLostError" in log_path.read_text()


def test_redis_going_away_fails_the_wait_instead_of_hanging(tmp_path: Path) -> None:
    frame = synthetic_frame(np.random.default_rng(9), 2_000_000, features=4)
    path = write_frame(frame, tmp_path / "big.npy")

    with LocalCluster(make_settings(tmp_path), workers=1) as cluster:
        client = Client(cluster.settings)
        job_id = client.submit_regression(path, "c4", None, True, 100_000)
        cluster.redis_server.stop()
        started = time.monotonic()
        with pytest.raises((BrokerUnavailable, ClusterError)):
            client.wait(job_id, progress=False, timeout_s=60,
                        health_check=cluster.check_alive)
        assert time.monotonic() - started < 30
        client.close()
