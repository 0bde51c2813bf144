"""The ``lepton`` command, run as a user would, against real clusters."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.datasets import synthetic_frame, write_frame


def lepton(*args: str, env: dict[str, str], cwd: Path | None = None,
           timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def small_csv(data_root: Path) -> Path:
    frame = synthetic_frame(np.random.default_rng(11), 400, features=2, missing=5)
    return write_frame(frame, data_root / "cli.csv")


def test_regress_prints_table_and_writes_json_and_plot(cluster_env: dict[str, str],
                                                       small_csv: Path,
                                                       tmp_path: Path) -> None:
    out, plot = tmp_path / "fit.json", tmp_path / "fit.png"

    done = lepton("regress", str(small_csv), "--target", "y", "--features", "x0,x1",
                  "--chunk-rows", "50", "--out", str(out), "--plot", str(plot),
                  env=cluster_env)

    assert done.returncode == 0, done.stderr
    assert "intercept" in done.stdout and "R²" in done.stdout
    result = json.loads(out.read_text())
    assert result["features"] == ["intercept", "x0", "x1"]
    assert result["n_chunks"] == 8
    assert result["n_rows"] + result["n_dropped"] == 400
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Redirected output gets no progress-bar redraws.
    assert "\r" not in done.stderr and "chunk/s" not in done.stderr


def test_detached_job_result_is_fetched_by_id(cluster_env: dict[str, str],
                                              small_csv: Path) -> None:
    submitted = lepton("regress", str(small_csv), "--target", "y", "--detach",
                       env=cluster_env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()

    fetched = None
    for _ in range(100):
        fetched = lepton("result", job_id, env=cluster_env)
        if fetched.returncode == 0:
            break
    assert fetched is not None and fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["job_id"] == job_id


def test_errors_are_one_line_messages_with_status_one(cluster_env: dict[str, str],
                                                      small_csv: Path) -> None:
    done = lepton("regress", str(small_csv), "--target", "nope", env=cluster_env)

    assert done.returncode == 1
    assert done.stderr.startswith("lepton: error:") and "'nope'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("options, expected", [
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--pool", "solo", "--concurrency", "2"], "--pool solo runs one task at a time"),
])
def test_worker_refuses_impossible_pool_options(cluster_env: dict[str, str],
                                                options: list[str], expected: str) -> None:
    done = lepton("worker", *options, env=cluster_env, timeout_s=30)

    assert done.returncode == 1
    assert expected in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("features", ["", "x0,,x1"])
def test_empty_feature_names_are_refused(cluster_env: dict[str, str], small_csv: Path,
                                         features: str) -> None:
    done = lepton("regress", str(small_csv), "--target", "y", "--features", features,
                  env=cluster_env)

    assert done.returncode == 2 and "expected column names separated by commas" in done.stderr


def test_worker_without_a_broker_says_what_to_set(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEPTON_")}

    done = lepton("worker", env=env, cwd=tmp_path, timeout_s=30)

    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "set LEPTON_BROKER_URL" in done.stderr


@pytest.mark.parametrize("option, value, expected", [
    ("--out", "{csv}/result.json", "is not a directory"),
    ("--plot", "{csv}/fit.png", "is not a directory"),
    ("--out", "{root}", "is a directory: name a file in it"),
    ("--out", "{root}/dangling/result.json", "is not a directory"),
    ("--out", "", "an empty path"),
])
def test_unwritable_output_is_refused_before_the_job_runs(
        cluster_env: dict[str, str], small_csv: Path, option: str, value: str,
        expected: str) -> None:
    dangling = small_csv.parent / "dangling"
    if not dangling.is_symlink():
        dangling.symlink_to(small_csv.parent / "no-such-directory")
    target = value.format(csv=small_csv, root=small_csv.parent)

    done = lepton("regress", str(small_csv), "--target", "y", option, target, env=cluster_env)

    assert done.returncode == 2 and expected in done.stderr
    assert "Traceback" not in done.stderr and "job" not in done.stdout


def test_output_that_would_replace_the_input_is_refused(cluster_env: dict[str, str],
                                                        small_csv: Path) -> None:
    before = small_csv.read_bytes()

    done = lepton("regress", str(small_csv), "--target", "y", "--out", str(small_csv),
                  env=cluster_env)

    assert done.returncode == 1 and "is the input file" in done.stderr
    assert small_csv.read_bytes() == before


def test_without_a_broker_a_local_cluster_runs_the_job_and_stops(tmp_path: Path) -> None:
    frame = synthetic_frame(np.random.default_rng(3), 1000, features=2)
    write_frame(frame, tmp_path / "local.parquet", row_group_rows=300)
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEPTON_")}
    env["LEPTON_DATA_ROOT"] = str(tmp_path)

    done = lepton("regress", "local.parquet", "--target", "y", "--workers", "1",
                  "--chunk-rows", "250", env=env, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    written = list((tmp_path / "lepton-results").glob("*.json"))
    assert len(written) == 1
    result = json.loads(written[0].read_text())
    complete = frame.to_numpy()
    design = np.column_stack([np.ones(len(complete)), complete[:, :-1]])
    expected, *_ = np.linalg.lstsq(design, complete[:, -1], rcond=None)
    np.testing.assert_allclose(result["coefficients"], expected, rtol=1e-9)
    assert result["n_chunks"] == 7  # row groups of 300, 300, 300, 100 rows

    fetched = lepton("result", result["job_id"], env=env, cwd=tmp_path)
    unknown = lepton("result", "no-such-job", env=env, cwd=tmp_path)

    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout) == result
    assert unknown.returncode == 1 and "no result no-such-job in" in unknown.stderr


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_or_termination_stops_the_local_redis_and_workers(
        tmp_path: Path, signal_number: int) -> None:
    frame = synthetic_frame(np.random.default_rng(4), 4_000_000, features=4)
    write_frame(frame, tmp_path / "slow.npy")
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEPTON_")}
    env["LEPTON_DATA_ROOT"] = str(tmp_path)
    command = [sys.executable, "-m", "producer.cli", "-v", "regress", "slow.npy", "--target",
               "c4", "--workers", "1", "--chunk-rows", "100000"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

    assert process.stderr is not None
    for line in process.stderr:
        if "job submitted" in line:
            break
    started = child_pids(process.pid)
    assert len(started) == 2, "expected redis-server and a worker as children"
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not list(tmp_path.glob("lepton-results/*.json")), "the job should not finish"
    for pid in started:
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_result_of_a_failed_job_names_the_chunk_error(cluster_env: dict[str, str],
                                                      data_root: Path) -> None:
    path = data_root / "cli-bad.csv"
    rows = [f"{x},{x + 1}" for x in range(3000)]
    rows[2500] = "2500,oops"
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    submitted = lepton("regress", str(path), "--target", "y", "--chunk-rows", "1000",
                       "--detach", env=cluster_env)
    job_id = submitted.stdout.strip()

    for _ in range(100):
        fetched = lepton("result", job_id, env=cluster_env)
        if "still running" not in fetched.stderr:
            break
    assert fetched.returncode == 1
    assert "chunk 2, line 2502" in fetched.stderr and "ChordError" not in fetched.stderr
