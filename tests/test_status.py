"""``lepton status`` answers from Redis alone: state, chunks (or generations) done, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_settings

from producer.client import Client
from producer.local_cluster import RedisServer
from producer.optimization import submit_optimization, wait_optimization
from producer.status import format_status, read_status
from tasks import errors

WAIT_S = 60.0


def lepton(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """Run the ``lepton`` command in a new process, as after a producer restart."""
    return subprocess.run([sys.executable, "-m", "producer.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=WAIT_S)


def test_finished_job_status_is_read_by_a_new_process(client: Client, data_root: Path,
                                                      cluster_env: dict[str, str]) -> None:
    path = data_root / "status-ok.csv"
    path.write_text("x,y\n" + "".join(f"{x},{3 * x - 1}\n" for x in range(30)))
    job_id = client.submit_regression(path, "y", ["x"], chunk_rows=10)
    client.wait(job_id, progress=False, timeout_s=WAIT_S)

    shown = lepton(cluster_env, "status", job_id, "--json")
    printed = lepton(cluster_env, "status", job_id)

    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["state"] == "SUCCESS"
    assert (status["chunks_done"], status["chunks_total"]) == (3, 3)
    assert status["errors"] == {}
    assert status["summary"]["n_rows"] == 30
    assert "state     SUCCESS" in printed.stdout and "chunks    3/3 done" in printed.stdout


def test_optimization_status_counts_generations(client: Client) -> None:
    job_id = submit_optimization(client, "pso", "sphere", 2, population=8, generations=5,
                                 seed=3)
    wait_optimization(client, job_id, progress=False, timeout_s=WAIT_S)

    status = read_status(client, job_id)

    assert (status.state, status.chunks_done, status.chunks_total) == ("SUCCESS", 5, 5)
    assert "generations 5/5 done" in format_status(status)


def test_failed_job_status_names_the_chunk_and_its_error(client: Client,
                                                         data_root: Path) -> None:
    path = data_root / "status-bad.csv"
    rows = [f"{x},{x + 1}" for x in range(2100)]
    rows[1800] = "1800,oops"  # past the rows the producer samples before submitting
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    job_id = client.submit_regression(path, "y", ["x"], chunk_rows=700)
    with pytest.raises(errors.ColumnNotNumeric):
        client.wait(job_id, progress=False, timeout_s=WAIT_S)

    status = read_status(client, job_id)

    assert status.state == "FAILURE"
    assert list(status.errors) == [2]
    assert "ColumnNotNumeric" in status.errors[2] and "'oops'" in status.errors[2]
    assert "error     chunk 2: tasks.errors.ColumnNotNumeric" in format_status(status)


def test_job_nobody_has_taken_yet_is_queued_with_no_chunk_done(tmp_path: Path) -> None:
    path = tmp_path / "queued.csv"
    path.write_text("x,y\n" + "".join(f"{x},{x}\n" for x in range(20)))
    server = RedisServer()
    server.start()
    client = Client(make_settings(tmp_path).with_broker(server.url))
    try:
        job_id = client.submit_regression(path, "y", ["x"], chunk_rows=5)
        status = read_status(client, job_id)
    finally:
        client.close()
        server.stop()

    assert (status.state, status.chunks_done, status.chunks_total) == ("QUEUED", 0, 4)
    assert status.source == str(path.resolve())


def test_status_of_an_unknown_job_is_a_clear_error(cluster_env: dict[str, str]) -> None:
    shown = lepton(cluster_env, "status", "no-such-job")

    assert shown.returncode == 1
    assert "lepton: error: no job no-such-job in this cluster" in shown.stderr


def test_without_a_cluster_status_reads_the_result_file(tmp_path: Path) -> None:
    results = tmp_path / "lepton-results"
    results.mkdir()
    (results / "done-job.json").write_text(json.dumps({
        "job_id": "done-job", "kind": "regression", "source": "/data/a.csv", "n_chunks": 3,
        "r_squared": 0.5, "n_rows": 30}))
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEPTON_")}
    env["LEPTON_DATA_ROOT"] = str(tmp_path)

    shown = lepton(env, "status", "done-job")
    unknown = lepton(env, "status", "other-job")

    assert shown.returncode == 0, shown.stderr
    assert "state     SUCCESS" in shown.stdout and "chunks    3/3 done" in shown.stdout
    assert "r_squared=0.5" in shown.stdout
    assert unknown.returncode == 1 and "no result other-job in" in unknown.stderr
