"""Safety by default: JSON only, registered task names only, no file outside the data root."""

import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from producer.client import Client
from producer.local_cluster import LocalCluster
from producer.status import read_status
from tasks import errors
from tasks.data_root import result_path
from workers.progress import read_failures
from workers.queues import MAP_QUEUE

WAIT_S = 30.0


class CreatesFileWhenUnpickled:
    """A pickle payload that opens (and so creates) a file: what an attacker would send."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def wait_for_log(cluster: LocalCluster, text: str) -> str:
    """Return the worker log once it contains ``text``; fail after ``WAIT_S``."""
    assert cluster.log_path is not None
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        log = cluster.log_path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.1)
    pytest.fail(f"the worker log never mentioned {text!r}")


def run_small_job(client: Client, data_root: Path, name: str) -> dict[str, Any]:
    path = data_root / name
    path.write_text("x,y\n1,3\n2,5\n3,7\n4,9\n")
    job_id = client.submit_regression(path, "y", ["x"], chunk_rows=2)
    return client.wait(job_id, progress=False, timeout_s=WAIT_S)


def test_pickle_payload_is_live_when_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(CreatesFileWhenUnpickled(marker))).close()

    assert marker.exists()


def test_pickled_message_on_the_queue_is_refused_and_its_payload_never_runs(
        client: Client, cluster: LocalCluster, data_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-ran"
    task_id = str(uuid.uuid4())
    body = ((CreatesFileWhenUnpickled(marker),), {}, {})
    headers = {"lang": "py", "task": "lepton.regression.map", "id": task_id,
               "root_id": task_id, "parent_id": None, "group": None, "retries": 0,
               "argsrepr": "(evil)", "kwargsrepr": "{}", "origin": "attacker"}
    assert client.settings.broker_url is not None
    with Connection(client.settings.broker_url) as connection:
        connection.Producer().publish(body, exchange=MAP_QUEUE, routing_key=MAP_QUEUE,
                                      serializer="pickle", headers=headers)

    log = wait_for_log(cluster, "ContentDisallowed")
    result = run_small_job(client, data_root, "after-pickle.csv")

    assert "pickle" in log
    assert result["coefficients"] == pytest.approx([1.0, 2.0])
    assert not marker.exists()
    assert client.redis.llen(MAP_QUEUE) == 0
    assert client.app.backend.get_task_meta(task_id)["status"] == "PENDING"


def test_message_naming_an_unregistered_task_is_discarded(
        client: Client, cluster: LocalCluster, tmp_path: Path) -> None:
    marker = tmp_path / "exec-ran"
    sent = client.app.send_task("builtins.exec", args=[f"open({str(marker)!r}, 'w')"],
                                queue=MAP_QUEUE)

    error = sent.get(timeout=WAIT_S, propagate=False)

    assert type(error).__name__ == "NotRegistered" and "builtins.exec" in str(error)
    assert "unregistered task" in wait_for_log(cluster, "builtins.exec")
    assert not marker.exists()


def map_chunk(client: Client, path: str) -> tuple[BaseException, str]:
    """Send one map task for ``path`` through the real workers; return its error and job id."""
    job = {"job_id": str(uuid.uuid4()), "kind": "regression", "features": ["x"],
           "target": "y", "columns": ["x", "y"], "intercept": True, "n_chunks": 1,
           "n_rows": 3}
    chunk = {"index": 0, "path": path, "format": "csv", "start": 0, "end": 64,
             "first_line": 2, "rows": 3}
    sent = client.app.send_task("lepton.regression.map", args=(job, chunk))
    error = sent.get(timeout=WAIT_S, propagate=False)
    assert isinstance(error, BaseException), f"map of {path} did not fail: {error!r}"
    return error, job["job_id"]


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd",
                                  "nested/../../outside.csv"])
def test_map_task_refuses_a_path_that_leaves_the_data_root(client: Client, path: str) -> None:
    error, job_id = map_chunk(client, path)

    assert type(error).__name__ == "PathOutsideDataRoot"
    assert path in str(error)
    # The worker records the chunk's error for `lepton status` just after storing the result.
    deadline = time.monotonic() + WAIT_S
    while not read_failures(client.redis, job_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = read_status(client, job_id)
    assert status.state == "FAILURE"
    assert "PathOutsideDataRoot" in status.errors[0]


def test_map_task_refuses_a_symlink_that_points_out_of_the_data_root(
        client: Client, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "secret.csv"
    outside.write_text("x,y\n1,2\n2,3\n3,4\n")
    (data_root / "link-out.csv").symlink_to(outside)

    error, _ = map_chunk(client, "link-out.csv")

    assert type(error).__name__ == "PathOutsideDataRoot"
    assert "link-out.csv" in str(error) and "outside the data root" in str(error)


def test_result_file_name_cannot_leave_the_results_directory(tmp_path: Path) -> None:
    assert result_path(tmp_path, "1a2b-3c") == tmp_path / "1a2b-3c.json"
    for job_id in ("../escape", "/etc/passwd", "a/b", "..", ""):
        with pytest.raises(errors.PathOutsideDataRoot, match="not a plain name"):
            result_path(tmp_path, job_id)
