"""Shard look-up speed against plain Redis ``HGET``/``HMGET`` of the same rows, same run.

Writes ``--rows`` synthetic rows (integer key, a float, an integer and a short string),
builds a shard set of ``--shards`` shards, starts a private Redis and ``--workers``
single-process worker nodes, and warms every shard into memory. Then it times:

- Lepton ``lookup``: ``--keys`` random keys (about 10 % missing) as one chord, from the
  call to the merged rows in a DataFrame in the caller (``--repeats`` times);
- Lepton ``get``: one key, end to end, ``--gets`` times (p50 and p99 latency);
- baseline: the same rows stored as JSON in one Redis hash on the same Redis server;
  ``HMGET`` of the same keys plus JSON decoding into a DataFrame, and ``HGET`` of one key;
- floor: a Celery round trip of Celery's built-in no-op task (``celery.accumulate``) to
  the same worker node, the least any look-up through Celery can cost.

Figures depend on what else runs on the machine: the load average is printed.

Usage: python benchmarks/shard_lookup.py [--rows 200000] [--keys 10000] [--workers 2]
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import redis
from tqdm import tqdm

from producer.node_cluster import NodeCluster
from producer.shard_client import ShardClient
from workers.membership import node_queue
from workers.settings import Settings

BASELINE_HASH = "bench:rows"


def write_rows(path: Path, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame({
        "key": rng.permutation(rows).astype(np.int64) * 2,
        "value": rng.normal(size=rows),
        "count": rng.integers(0, 1000, rows),
        "label": [f"item-{index:07d}" for index in range(rows)],
    })
    frame.to_parquet(path, index=False)
    return frame


def load_baseline(client: redis.Redis, frame: pd.DataFrame) -> None:
    records = frame.to_dict("records")
    with client.pipeline(transaction=False) as pipe:
        for start in range(0, len(records), 10_000):
            batch = records[start:start + 10_000]
            pipe.hset(BASELINE_HASH, mapping={
                str(record["key"]): json.dumps(record) for record in batch})
        pipe.execute()


def baseline_many(client: redis.Redis, keys: list[int]) -> float:
    started = time.perf_counter()
    raw = client.hmget(BASELINE_HASH, [str(key) for key in keys])
    rows = [json.loads(value) if value is not None else {"key": key}
            for key, value in zip(keys, raw)]
    pd.DataFrame(rows)
    return time.perf_counter() - started


def baseline_one(client: redis.Redis, key: int) -> float:
    started = time.perf_counter()
    value = client.hget(BASELINE_HASH, str(key))
    if value is not None:
        json.loads(value)
    return time.perf_counter() - started


def lepton_one(shards: ShardClient, key: int) -> float:
    started = time.perf_counter()
    shards.get("bench", [key])
    return time.perf_counter() - started


def celery_floor(shards: ShardClient, node: str) -> float:
    started = time.perf_counter()
    result = shards.client.app.signature("celery.accumulate", args=(1,),
                                         queue=node_queue(node), exchange="",
                                         routing_key=node_queue(node)).apply_async()
    result.get(timeout=30)
    result.forget()
    return time.perf_counter() - started


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3)


def plot(lepton_s: list[float], baseline_s: list[float], floor_s: list[float],
         path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for label, seconds in (("lepton get (one key)", lepton_s), ("redis HGET", baseline_s),
                           ("celery no-op round trip", floor_s)):
        values = np.sort(np.asarray(seconds) * 1e3)
        axes.plot(values, np.arange(1, len(values) + 1) / len(values), label=label)
    axes.axvline(10, color="grey", linestyle=":", label="p99 target 10 ms")
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of requests")
    axes.set_title("Single-key latency, same rows, same Redis")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="worker nodes")
    parser.add_argument("--pool", choices=("solo", "prefork"), default="solo",
                        help="each node's pool (prefork: one child process per node)")
    parser.add_argument("--plot", type=Path, default=Path("shard_lookup_latency.png"))
    args = parser.parse_args()
    rng = np.random.default_rng(20261204)

    with tempfile.TemporaryDirectory(prefix="lepton-bench-") as directory:
        root = Path(directory)
        frame = write_rows(root / "bench.parquet", args.rows, rng)
        settings = Settings.from_env({"LEPTON_DATA_ROOT": str(root),
                                      "LEPTON_RESULTS_DIR": str(root / "results")})
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        with NodeCluster(settings, nodes=args.workers, pool=args.pool) as cluster:
            shards = ShardClient(cluster.settings, cluster.check_alive)
            shards.build(root / "bench.parquet", "key", args.shards)
            baseline = redis.Redis.from_url(cluster.settings.result_backend or "")
            load_baseline(baseline, frame)

            # Keys drawn from twice the stored range minus odd numbers: about 10 % miss.
            stored = frame["key"].to_numpy()
            warm = shards.lookup("bench", stored.tolist(), progress=False)
            assert warm.n_missing == 0
            batches = []
            for _ in range(args.repeats):
                keys = rng.choice(stored, args.keys).tolist()
                keys[::10] = (rng.integers(0, args.rows, len(keys[::10])) * 2 + 1).tolist()
                batches.append(keys)

            lepton_many, redis_many = [], []
            for keys in tqdm(batches, desc="10k-key look-ups", leave=False):
                result = shards.lookup("bench", keys, progress=False)
                assert result.n_keys == len(keys)
                lepton_many.append(result.elapsed_s)
                redis_many.append(baseline_many(baseline, keys))

            singles = rng.choice(stored, args.gets).tolist()
            node = sorted(cluster.nodes)[0]
            lepton_single, redis_single, floor = [], [], []
            for key in tqdm(singles, desc="single-key gets", leave=False):
                lepton_single.append(lepton_one(shards, key))
                redis_single.append(baseline_one(baseline, key))
                floor.append(celery_floor(shards, node))

            shards.close()
            baseline.close()
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        report(args, lepton_many, redis_many, lepton_single, redis_single, floor)
        plot(lepton_single, redis_single, floor, args.plot)
        print(f"wrote {args.plot}")


def report(args: argparse.Namespace, lepton_many: list[float], redis_many: list[float],
           lepton_single: list[float], redis_single: list[float], floor: list[float]) -> None:
    lepton_rate = args.keys / statistics.median(lepton_many)
    redis_rate = args.keys / statistics.median(redis_many)
    lepton_p50, lepton_p99 = percentiles(lepton_single)
    redis_p50, redis_p99 = percentiles(redis_single)
    print(f"\n{args.rows:,} rows, {args.shards} shards, {args.workers} worker nodes, "
          f"{args.keys:,}-key look-ups x {args.repeats}, {args.gets} single-key gets")
    print(f"{'':<34}{'lepton':>12}{'redis':>12}{'lepton/redis':>14}")
    print(f"{'keys/s, median of look-ups':<34}{lepton_rate:>12,.0f}{redis_rate:>12,.0f}"
          f"{lepton_rate / redis_rate:>14.2f}")
    best = args.keys / min(lepton_many)
    print(f"{'keys/s, best look-up':<34}{best:>12,.0f}"
          f"{args.keys / min(redis_many):>12,.0f}{best / (args.keys / min(redis_many)):>14.2f}")
    print(f"{'single key p50 (ms)':<34}{lepton_p50:>12.2f}{redis_p50:>12.3f}"
          f"{lepton_p50 / redis_p50:>14.1f}")
    print(f"{'single key p99 (ms)':<34}{lepton_p99:>12.2f}{redis_p99:>12.3f}"
          f"{lepton_p99 / redis_p99:>14.1f}")
    floor_p50, floor_p99 = percentiles(floor)
    print(f"{'celery no-op round trip p50/p99':<34}{floor_p50:>12.2f}{floor_p99:>12.2f}  (floor)")
    print(f"targets: >= 100,000 keys/s ({'met' if lepton_rate >= 100_000 else 'NOT met'}), "
          f"p99 < 10 ms ({'met' if lepton_p99 < 10 else 'NOT met'})")


if __name__ == "__main__":
    main()
