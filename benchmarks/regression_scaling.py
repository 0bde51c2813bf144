"""Distributed regression against numpy in one process on the same chunks.

Writes N x (features + 1) synthetic rows as NPY and CSV, then times, for each format:

- Lepton: a local cluster with ``--workers`` pool processes (Redis and worker start-up
  excluded, reported separately), one chord from submit to result;
- numpy, one process, the same TSQR kernel over the same chunks read the same way;
- numpy, one process, the normal equations ``X.T @ X`` over the same chunks (faster, but
  loses digits on ill-conditioned data; shown as the floor).

Usage: python benchmarks/regression_scaling.py [--rows 10000000] [--features 8]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from producer.client import Client
from producer.local_cluster import LocalCluster
from producer.planning import plan_regression
from tasks.formats import read_chunk
from tasks.least_squares import chunk_partial, merge_partials, solve
from workers.settings import Settings


def write_data(directory: Path, rows: int, features: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    values = np.empty((rows, features + 1))
    values[:, :features] = rng.normal(size=(rows, features))
    values[:, features] = values[:, :features] @ rng.normal(size=features) + rng.normal(
        size=rows)
    npy = directory / "synthetic.npy"
    np.save(npy, values)
    csv = directory / "synthetic.csv"
    names = [f"c{index}" for index in range(features + 1)]
    pd.DataFrame(values, columns=names).to_csv(csv, index=False, float_format="%.10g")
    return npy, csv


def single_process(path: Path, data_root: Path, target: str, chunk_rows: int,
                   method: str) -> tuple[float, np.ndarray]:
    plan = plan_regression(path, target, None, True, chunk_rows, data_root, 1)
    job = plan.job
    used = job["features"] + [target]
    started = time.perf_counter()
    partials, gram = [], None
    for chunk in plan.chunks:
        values = read_chunk(path, chunk, used, job["columns"])
        values = values[~np.isnan(values).any(axis=1)]
        if method == "tsqr":
            partials.append(chunk_partial(values[:, :-1], values[:, -1], True))
        else:
            design = np.column_stack([np.ones(len(values)), values])
            gram = design.T @ design if gram is None else gram + design.T @ design
    if method == "tsqr":
        coefficients = solve(merge_partials(partials), job["features"], target,
                             True).coefficients
    else:
        assert gram is not None
        coefficients = np.linalg.solve(gram[:-1, :-1], gram[:-1, -1])
    return time.perf_counter() - started, coefficients


def distributed(client: Client, path: Path, target: str, chunk_rows: int
                ) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    job_id = client.submit_regression(path, target, None, True, chunk_rows)
    result = client.wait(job_id, progress=False, timeout_s=3600)
    return time.perf_counter() - started, np.asarray(result["coefficients"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lepton-bench-") as directory:
        data_root = Path(directory)
        started = time.perf_counter()
        paths = write_data(data_root, args.rows, args.features, args.seed)
        print(f"wrote {args.rows:,} x {args.features + 1} rows as NPY and CSV in "
              f"{time.perf_counter() - started:.1f} s")
        target = f"c{args.features}"
        settings = Settings.from_env({"LEPTON_DATA_ROOT": directory,
                                      "LEPTON_RESULTS_DIR": f"{directory}/results"})
        started = time.perf_counter()
        with LocalCluster(settings, workers=args.workers) as cluster:
            print(f"local cluster ({args.workers} workers) started in "
                  f"{time.perf_counter() - started:.2f} s (not counted below)")
            client = Client(cluster.settings)
            print(f"{'format':<8}{'lepton s':>10}{'numpy tsqr s':>14}{'numpy XtX s':>13}"
                  f"{'tsqr/lepton':>13}{'XtX/lepton':>12}{'max rel diff':>14}")
            for path in paths:
                lepton_s, lepton_coef = distributed(client, path, target, args.chunk_rows)
                tsqr_s, tsqr_coef = single_process(path, data_root, target,
                                                   args.chunk_rows, "tsqr")
                gram_s, _ = single_process(path, data_root, target, args.chunk_rows, "gram")
                difference = np.max(np.abs(lepton_coef - tsqr_coef) / np.abs(tsqr_coef))
                print(f"{path.suffix[1:]:<8}{lepton_s:>10.2f}{tsqr_s:>14.2f}{gram_s:>13.2f}"
                      f"{tsqr_s / lepton_s:>13.2f}{gram_s / lepton_s:>12.2f}"
                      f"{difference:>14.1e}")
            client.close()


if __name__ == "__main__":
    main()
