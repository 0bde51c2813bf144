"""Distributed regression against numpy in one process on the same chunks.

Writes N x (features + 1) synthetic rows as NPY and CSV, then times, for each format:

- Lepton: a local cluster with ``--workers`` pool processes (Redis and worker start-up
  excluded, reported separately), one chord from submit to result;
- numpy, one process, streaming the same chunks the way one process would (pandas
  ``read_csv(chunksize=...)``, slices of a memory map) through the same TSQR kernel, with
  BLAS at its default thread count and pinned to one thread;
- numpy, one process, the normal equations ``X.T @ X`` over the same chunks (faster, but
  loses digits on ill-conditioned data; shown as the floor).

Lepton's time includes planning (for CSV, one pass over the file to find line ends).

Usage: python benchmarks/regression_scaling.py [--rows 10000000] [--features 8]
"""

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from producer.client import Client
from producer.local_cluster import LocalCluster
from tasks.least_squares import block_partial, merge_partials, solve
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


def stream_chunks(path: Path, chunk_rows: int) -> Iterator[np.ndarray]:
    """Yield (n, k) float64 blocks of the file as a single process would read it."""
    if path.suffix == ".csv":
        for frame in pd.read_csv(path, chunksize=chunk_rows, engine="c"):
            yield frame.to_numpy(dtype=np.float64)
        return
    array = np.load(path, mmap_mode="r")
    for start in range(0, len(array), chunk_rows):
        yield np.asarray(array[start:start + chunk_rows], dtype=np.float64)


def single_process(path: Path, chunk_rows: int, method: str) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    partials, gram = [], None
    names: list[str] = []
    for values in stream_chunks(path, chunk_rows):
        values = values[~np.isnan(values).any(axis=1)]
        names = [f"c{index}" for index in range(values.shape[1] - 1)]
        if method == "tsqr":
            partials.append(block_partial(np.asfortranarray(values), True))
        else:
            design = np.column_stack([np.ones(len(values)), values])
            gram = design.T @ design if gram is None else gram + design.T @ design
    if method == "tsqr":
        coefficients = solve(merge_partials(partials), names, "y", True).coefficients
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
            print("seconds; ratio = single-process time / Lepton time (above 1: Lepton wins)")
            print(f"{'format':<7}{'lepton':>8}{'tsqr':>8}{'tsqr 1-thr':>11}{'XtX':>7}"
                  f"{'ratio tsqr':>11}{'ratio 1-thr':>12}{'ratio XtX':>10}{'rel diff':>10}")
            for path in paths:
                lepton_s, lepton_coef = distributed(client, path, target, args.chunk_rows)
                tsqr_s, tsqr_coef = single_process(path, args.chunk_rows, "tsqr")
                with threadpool_limits(limits=1, user_api="blas"):
                    pinned_s, _ = single_process(path, args.chunk_rows, "tsqr")
                gram_s, _ = single_process(path, args.chunk_rows, "gram")
                difference = np.max(np.abs(lepton_coef - tsqr_coef) / np.abs(tsqr_coef))
                print(f"{path.suffix[1:]:<7}{lepton_s:>8.2f}{tsqr_s:>8.2f}{pinned_s:>11.2f}"
                      f"{gram_s:>7.2f}{tsqr_s / lepton_s:>11.2f}{pinned_s / lepton_s:>12.2f}"
                      f"{gram_s / lepton_s:>10.2f}{difference:>10.1e}")
            client.close()


if __name__ == "__main__":
    main()
