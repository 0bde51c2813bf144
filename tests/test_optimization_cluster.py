"""Optimisation jobs on the session cluster (real Redis, real worker processes), compared
bit for bit with the same search run in this process."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from producer.client import Client
from producer.optimization import (
    resume_optimization,
    stop_optimization,
    submit_optimization,
    wait_optimization,
)
from producer.status import read_status
from tasks.errors import (
    DatasetNotFound,
    InvalidBounds,
    InvalidSearchSetting,
    JobStopped,
    LeptonError,
    UnknownObjective,
)
from tasks.objectives import evaluate, get_objective
from tasks.optimization import GENERATION_TASK, checkpoint_file
from tasks.search import SearchState, build_config, run_in_process
from tests.objective_fixtures import NEEDED_FILE
from tests.test_optimization_numerics import write_small_flights
from workers.checkpoints import checkpoint_key, read_checkpoint, read_progress
from workers.progress import job_key

FIXTURES = "tests.objective_fixtures"
TIMEOUT_S = 120


def run_job(client: Client, algorithm: str, objective: str, dim: int,
            **request: Any) -> dict[str, Any]:
    job_id = submit_optimization(client, algorithm, objective, dim, **request)
    return wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)


def in_process(algorithm: str, objective: str, dim: int, bounds: Any, population: int,
               generations: int, seed: int, target: float | None = None,
               data_root: Path | None = None) -> SearchState:
    """The same search without Celery: the reference every distributed run must equal."""
    found = get_objective(objective, FIXTURES)
    config = build_config(algorithm, found, dim, bounds, population, generations, seed,
                          population, target)

    def score(candidates: np.ndarray) -> tuple[np.ndarray, int]:
        evaluation = evaluate(found, candidates, data_root)
        return evaluation.values, int(evaluation.invalid.sum())

    return run_in_process(config, score)


def assert_same_search(result: dict[str, Any], reference: SearchState) -> None:
    assert result["best_x"] == reference.best_x.tolist()  # type: ignore[union-attr]
    assert result["best_f"] == reference.best_f
    assert result["history"]["best"] == list(reference.history_best)
    assert result["history"]["mean"] == list(reference.history_mean)
    assert result["evaluations"] == reference.evaluations
    assert result["invalid_evaluations"] == reference.invalid
    assert result["generations"] == reference.generation


@pytest.mark.parametrize(("algorithm", "population"), [("ga", 100), ("pso", 30)])
def test_both_algorithms_find_the_5d_sphere_minimum_to_1e_8(client: Client, algorithm: str,
                                                             population: int) -> None:
    result = run_job(client, algorithm, "sphere", 5, population=population, generations=600,
                     seed=2026, target=1e-9)

    assert result["best_f"] < 1e-8
    assert np.abs(result["best_x"]).max() < 1e-4
    assert result["stop_reason"] == "target"
    assert result["evaluations"] == population * result["generations"]
    assert_same_search(result, in_process(algorithm, "sphere", 5, None, population, 600,
                                          2026, target=1e-9))


@pytest.mark.parametrize("algorithm", ["ga", "pso"])
def test_the_same_seed_gives_the_same_bits_whatever_the_batch_size(client: Client,
                                                                   algorithm: str) -> None:
    results = [run_job(client, algorithm, "rastrigin", 4, population=12, generations=15,
                       seed=77, batch=batch) for batch in (1, 5, 12)]

    reference = in_process(algorithm, "rastrigin", 4, None, 12, 15, 77)
    for result in results:
        assert_same_search(result, reference)
    assert [result["batch"] for result in results] == [1, 5, 12]


def test_a_finished_search_keeps_no_per_generation_results_in_redis(client: Client) -> None:
    result = run_job(client, "ga", "sphere", 2, population=6, generations=5, seed=2, batch=2)
    job_id = result["job_id"]

    keys = {key.decode() for key in client.redis.keys(f"*{job_id}*")}

    # The last callback's own result may land just after the job's; nothing else remains.
    keys.discard(f"celery-task-meta-{job_id}.g4.step")
    assert keys == {f"celery-task-meta-{job_id}", f"lepton:job:{job_id}",
                    f"lepton:job:{job_id}:done", f"lepton:opt:{job_id}",
                    f"lepton:opt:{job_id}:candidates"}


def test_nan_infinite_and_raising_candidates_are_counted_and_the_search_goes_on(
        client: Client) -> None:
    result = run_job(client, "ga", "flaky_sphere", 2, population=20, generations=10,
                     seed=5, batch=6)

    reference = in_process("ga", "flaky_sphere", 2, None, 20, 10, 5)
    assert result["invalid_evaluations"] > 0
    assert result["best_f"] is not None and result["best_f"] < 1.0
    assert_same_search(result, reference)


def test_bad_input_is_refused_before_anything_is_enqueued(client: Client) -> None:
    keys_before = set(client.redis.keys("lepton:opt:*"))
    queued_before = client.redis.llen("fitness")
    refused = [
        (UnknownObjective, "unknown objective 'no_such'", ("ga", "no_such", 3), {}),
        (InvalidBounds, "lower bound 2.0 is not below upper bound -2.0", ("ga", "sphere", 3),
         {"bounds": (2.0, -2.0)}),
        (InvalidSearchSetting, "dimension (--dim) must be at least 1", ("pso", "sphere", 0),
         {}),
        (InvalidSearchSetting, "population (--population) must be at least 2",
         ("ga", "sphere", 3), {"population": 1}),
    ]
    for error, message, (algorithm, objective, dim), options in refused:
        with pytest.raises(error) as raised:
            submit_optimization(client, algorithm, objective, dim, **options)
        assert message in str(raised.value)

    assert set(client.redis.keys("lepton:opt:*")) == keys_before
    assert client.redis.llen("fitness") == queued_before


def test_a_job_whose_objective_cannot_run_fails_with_its_error_and_resumes_once_fixed(
        client: Client, data_root: Path) -> None:
    needed = data_root / NEEDED_FILE
    needed.unlink(missing_ok=True)
    job_id = submit_optimization(client, "pso", "needs_file", 2, population=4,
                                 generations=3, seed=1, batch=2)

    with pytest.raises(DatasetNotFound, match=f"{NEEDED_FILE}: no such file under the data"):
        wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)
    with pytest.raises(LeptonError, match=f"job {job_id} failed: .*DatasetNotFound"):
        client.result(job_id)
    assert read_status(client, job_id).state == "FAILURE"

    needed.write_text("here now\n")
    try:
        resume_optimization(client, job_id)
        result = wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)
    finally:
        needed.unlink()
    assert_same_search(result, in_process("pso", "sphere", 2, (-5.0, 5.0), 4, 3, 1))


def test_a_generation_callback_delivered_twice_advances_the_job_once(client: Client) -> None:
    result = run_job(client, "pso", "sphere", 2, population=4, generations=3, seed=8, batch=2)
    job_id = result["job_id"]
    before = read_checkpoint(client.redis, job_id)

    replay = client.app.send_task(
        GENERATION_TASK, args=([{"index": 0, "fitness": {}, "invalid": 0},
                                {"index": 1, "fitness": {}, "invalid": 0}],),
        kwargs={"job_id": job_id, "generation": 1})
    outcome = replay.get(timeout=30)

    assert outcome == {"job_id": job_id, "generation": 1, "advanced": False}
    after = read_checkpoint(client.redis, job_id)
    assert after is not None and before is not None
    assert (after.generation, after.status, after.arrays) == (
        before.generation, before.status, before.arrays)
    assert client.result(job_id) == result


def test_a_stopped_job_resumes_from_its_checkpoint_to_the_same_result(client: Client) -> None:
    job_id = submit_optimization(client, "pso", "slow_sphere", 2, population=4,
                                 generations=4, seed=3, batch=2)
    stop_optimization(client, job_id)
    with pytest.raises(JobStopped, match=f"lepton resume {job_id}"):
        wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)
    stopped_at = read_progress(client.redis, job_id)
    status_when_stopped = read_status(client, job_id)
    with pytest.raises(JobStopped):
        client.result(job_id)

    resume_optimization(client, job_id)
    result = wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)

    assert stopped_at is not None and stopped_at.generation == 1
    assert_same_search(result, in_process("pso", "sphere", 2, (-5.0, 5.0), 4, 4, 3))
    assert (status_when_stopped.state, status_when_stopped.chunks_done,
            status_when_stopped.chunks_total) == ("STOPPED", 1, 4)
    assert status_when_stopped.source == "pso on slow_sphere (2-D)"
    finished = read_status(client, job_id)
    assert (finished.state, finished.chunks_done) == ("SUCCESS", 4)
    assert finished.summary["best_f"] == result["best_f"]


def test_a_job_whose_redis_checkpoint_is_lost_resumes_from_its_file_copy(
        client: Client) -> None:
    job_id = submit_optimization(client, "ga", "slow_sphere", 3, population=6, generations=3,
                                 seed=12, batch=3)
    stop_optimization(client, job_id)
    with pytest.raises(JobStopped):
        wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)
    assert checkpoint_file(client.settings.results_dir, job_id).exists()
    client.redis.delete(checkpoint_key(job_id), job_key(job_id))

    resume_optimization(client, job_id)
    result = wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)

    assert_same_search(result, in_process("ga", "sphere", 3, (-5.0, 5.0), 6, 3, 12))


@pytest.fixture
def small_flights(data_root: Path) -> Iterator[Path]:
    """A small flights.csv in the session data root, removed again afterwards."""
    path = write_small_flights(data_root)
    yield path
    path.unlink()


def test_workers_read_the_cross_validation_data_themselves(client: Client, data_root: Path,
                                                           small_flights: Path) -> None:
    result = run_job(client, "ga", "ridge_cv", 9, population=6, generations=2, seed=21,
                     batch=2)

    reference = in_process("ga", "ridge_cv", 9, None, 6, 2, 21, data_root=data_root)
    assert_same_search(result, reference)
    assert result["invalid_evaluations"] == 0


def lepton(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer.cli", *args], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def test_command_line_runs_a_search_and_result_fetches_it(cluster_env: dict[str, str],
                                                          client: Client,
                                                          tmp_path: Path) -> None:
    out, plot = tmp_path / "pso.json", tmp_path / "pso.png"
    finished = lepton(cluster_env, "optimize", "pso", "--objective", "rastrigin", "--dim", "3",
                      "--bounds", "-5.12:5.12", "--population", "10", "--generations", "6",
                      "--seed", "4", "--out", str(out), "--plot", str(plot))
    assert finished.returncode == 0, finished.stderr
    written = json.loads(out.read_text())
    for key in ("job_id", "kind", "algorithm", "objective", "best_x", "best_f", "evaluations",
                "generations", "history", "seed", "elapsed_s"):
        assert key in written
    assert written["kind"] == "optimization" and written["algorithm"] == "pso"
    assert f"best f   {written['best_f']:.10g}" in finished.stdout
    assert plot.stat().st_size > 10_000

    fetched = lepton(cluster_env, "result", written["job_id"])
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout) == written

    # No --dim: one LO:HI per dimension gives it.
    detached = lepton(cluster_env, "optimize", "ga", "--objective", "sphere",
                      "--bounds", "-1:1", "-2:0.5", "--population", "6", "--generations", "3",
                      "--seed", "1", "--detach")
    assert detached.returncode == 0, detached.stderr
    result = wait_optimization(client, detached.stdout.strip(), progress=False,
                               timeout_s=TIMEOUT_S)
    assert result["lower"] == [-1.0, -2.0] and result["upper"] == [1.0, 0.5]


def test_command_line_refuses_bad_bounds_with_a_message_and_no_traceback(
        cluster_env: dict[str, str]) -> None:
    refused = lepton(cluster_env, "optimize", "ga", "--objective", "sphere", "--dim", "3",
                     "--bounds", "-1:1,3:2,0:1")
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("lepton: error: lower bound 3.0 is not below upper "
                                      "bound 2.0 in dimension 1")

    infinite = lepton(cluster_env, "optimize", "pso", "--objective", "sphere", "--dim", "2",
                      "--bounds", "-inf:inf")
    assert infinite.returncode == 1
    assert infinite.stderr.strip() == ("lepton: error: bounds of dimension 0 must be finite, "
                                       "got -inf:inf")
