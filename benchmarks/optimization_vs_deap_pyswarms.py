"""Lepton's GA and PSO against DEAP's eaSimple and pyswarms' GlobalBestPSO.

Same evaluation budget and seeds for every method, on 10-D Rastrigin, Rosenbrock and
Ackley: prints the median best value and evaluations per second side by side, the fixed
cost of one Lepton generation, how throughput grows with the population, and an
expensive objective (ridge cross-validation on the flights) on 2 workers against one
process. Needs the ``bench`` extra (``pip install -e '.[bench]'``); starts its own Redis
and workers. Not part of the test suite.

    python benchmarks/optimization_vs_deap_pyswarms.py [--seeds 10] [--plot FILE]
"""

import argparse
import logging
import math
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from producer.client import Client
from producer.demo import write_flights_csv
from producer.local_cluster import LocalCluster
from producer.optimization import submit_optimization, wait_optimization
from tasks.objectives import evaluate, get_objective
from tasks.search import build_config, run_in_process
from workers.settings import Settings

DIM = 10
OBJECTIVES = ("rastrigin", "rosenbrock", "ackley")
WORKERS = 2
TIMEOUT_S = 1800.0


def rastrigin_point(x: list[float]) -> float:
    return 10.0 * len(x) + sum(v * v - 10.0 * math.cos(2.0 * math.pi * v) for v in x)


def rosenbrock_point(x: list[float]) -> float:
    return sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2 for a, b in zip(x, x[1:]))


def ackley_point(x: list[float]) -> float:
    n = len(x)
    return (-20.0 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / n))
            - math.exp(sum(math.cos(2.0 * math.pi * v) for v in x) / n) + 20.0 + math.e)


# DEAP scores one individual (a list) at a time; plain Python is its fastest form here.
POINTWISE = {"rastrigin": rastrigin_point, "rosenbrock": rosenbrock_point,
             "ackley": ackley_point}


def deap_fitness(name: str, individual: list[float]) -> tuple[float]:
    """DEAP's fitness tuple; a module-level function, so a process pool can pickle it."""
    return (POINTWISE[name](individual),)


def run_deap(name: str, seed: int, population: int, generations: int,
             pool_processes: int = 0) -> tuple[float, int, float]:
    """eaSimple with bounded SBX, polynomial mutation and tournaments of 3."""
    from deap import algorithms, base, creator, tools

    if not hasattr(creator, "LeptonBenchFitness"):
        creator.create("LeptonBenchFitness", base.Fitness, weights=(-1.0,))
        creator.create("LeptonBenchIndividual", list, fitness=creator.LeptonBenchFitness)
    low, high = get_objective(name).lower[0], get_objective(name).upper[0]  # type: ignore
    # DEAP draws from the random module's global generator; seeding it is its only way.
    random.seed(seed)
    toolbox = base.Toolbox()
    toolbox.register("gene", random.uniform, low, high)
    toolbox.register("individual", tools.initRepeat, creator.LeptonBenchIndividual,
                     toolbox.gene, DIM)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", deap_fitness, name)
    toolbox.register("mate", tools.cxSimulatedBinaryBounded, low=low, up=high, eta=15.0)
    toolbox.register("mutate", tools.mutPolynomialBounded, low=low, up=high, eta=20.0,
                     indpb=1.0 / DIM)
    toolbox.register("select", tools.selTournament, tournsize=3)
    pool = multiprocessing.Pool(pool_processes) if pool_processes else None
    if pool is not None:
        toolbox.register("map", pool.map)
    best = tools.HallOfFame(1)
    try:
        started = time.perf_counter()
        # mutpb=1 re-scores every individual each generation, the budget Lepton spends.
        _, log = algorithms.eaSimple(toolbox.population(population), toolbox, cxpb=0.9,
                                     mutpb=1.0, ngen=generations - 1, halloffame=best,
                                     stats=None, verbose=False)
        elapsed = time.perf_counter() - started
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    evaluations = sum(record["nevals"] for record in log)
    return float(best[0].fitness.values[0]), evaluations, elapsed


def run_pyswarms(name: str, seed: int, population: int, generations: int,
                 falling_inertia: bool = False) -> tuple[float, int, float]:
    """GlobalBestPSO with Lepton's coefficients and velocity limit.

    Its inertia stays at 0.7298 unless ``falling_inertia``, which gives it Lepton's
    schedule (pyswarms' ``lin_variation``: linearly down to 0.4), so that the two
    implementations of one algorithm can also be compared.
    """
    import pyswarms

    objective = get_objective(name)
    lower, upper = objective.default_bounds(DIM)  # type: ignore[misc]
    limit = 0.2 * float(upper[0] - lower[0])
    # pyswarms draws from numpy's global generator; seeding it is its only way.
    np.random.seed(seed)
    optimizer = pyswarms.single.GlobalBestPSO(
        n_particles=population, dimensions=DIM,
        options={"c1": 1.49618, "c2": 1.49618, "w": 0.7298},
        bounds=(lower, upper), velocity_clamp=(-limit, limit),
        oh_strategy={"w": "lin_variation"} if falling_inertia else None)
    quiet_logging()
    started = time.perf_counter()
    cost, _ = optimizer.optimize(objective.function, iters=generations, verbose=False)
    return float(cost), population * generations, time.perf_counter() - started


def quiet_logging() -> None:
    """Warnings only: each pyswarms optimiser sets the root logger to INFO again."""
    logging.basicConfig(level=logging.WARNING, force=True)


def run_lepton(client: Client, algorithm: str, name: str, seed: int, population: int,
               generations: int, batch: int | None = None,
               dim: int = DIM) -> tuple[float, int, float]:
    """One distributed job; its time is the job's own, from submission to the last step."""
    job_id = submit_optimization(client, algorithm, name, dim, population=population,
                                 generations=generations, seed=seed, batch=batch,
                                 workers=WORKERS)
    result = wait_optimization(client, job_id, progress=False, timeout_s=TIMEOUT_S)
    return float(result["best_f"]), int(result["evaluations"]), float(result["elapsed_s"])


def compare_quality(client: Client, seeds: int, population: int,
                    generations: int) -> list[dict[str, Any]]:
    """Run every method on every objective and seed; return one row per method."""
    methods: list[tuple[str, Callable[[str, int], tuple[float, int, float]]]] = [
        ("Lepton GA", lambda name, seed: run_lepton(client, "ga", name, seed, population,
                                                    generations)),
        ("DEAP eaSimple", lambda name, seed: run_deap(name, seed, population, generations)),
        ("Lepton PSO", lambda name, seed: run_lepton(client, "pso", name, seed, population,
                                                     generations)),
        ("pyswarms GlobalBest", lambda name, seed: run_pyswarms(name, seed, population,
                                                                generations)),
        ("pyswarms, falling w", lambda name, seed: run_pyswarms(name, seed, population,
                                                                generations, True)),
    ]
    rows = []
    with tqdm(total=len(OBJECTIVES) * len(methods) * seeds, desc="quality runs",
              unit="run") as bar:
        for name in OBJECTIVES:
            for label, method in methods:
                runs = []
                for seed in range(seeds):
                    runs.append(method(name, seed))
                    bar.update()
                rows.append({
                    "objective": name, "method": label,
                    "median_best": statistics.median(run[0] for run in runs),
                    "evaluations": runs[0][1],
                    "evals_per_s": sum(run[1] for run in runs) / sum(run[2] for run in runs),
                })
    return rows


def print_quality(rows: list[dict[str, Any]], population: int, generations: int,
                  seeds: int) -> None:
    print(f"\n{DIM}-D, population {population}, {generations} generations "
          f"({population * generations:,} evaluations), {seeds} seeds")
    print(f"{'objective':<11}{'method':<21}{'median best':>13}{'evals':>8}{'evals/s':>11}"
          f"{'vs peer':>9}")
    by_key = {(row["objective"], row["method"]): row for row in rows}
    peers = {"Lepton GA": "DEAP eaSimple", "Lepton PSO": "pyswarms GlobalBest"}
    for row in rows:
        peer = by_key.get((row["objective"], peers.get(row["method"], "")))
        ratio = f"{row['evals_per_s'] / peer['evals_per_s']:.2f}x" if peer else ""
        print(f"{row['objective']:<11}{row['method']:<21}{row['median_best']:>13.4g}"
              f"{row['evaluations']:>8,}{row['evals_per_s']:>11,.0f}{ratio:>9}")


def fixed_cost(client: Client) -> dict[str, float]:
    """Seconds per generation when evaluating costs nothing: population 2, sphere."""
    costs = {}
    for batch in (2, 1):
        _, _, elapsed = run_lepton(client, "pso", "sphere", 1, 2, 200, batch=batch)
        costs[f"{2 // batch} fitness task(s)"] = elapsed / 200
    return costs


def throughput_by_population(client: Client,
                             populations: tuple[int, ...]) -> list[tuple[int, float, float]]:
    """Lepton PSO evaluations per second on Rastrigin as the population grows."""
    rows = []
    for population in tqdm(populations, desc="population sweep", unit="run"):
        generations = max(5, min(100, 400_000 // population))
        _, evaluations, elapsed = run_lepton(client, "pso", "rastrigin", 3, population,
                                             generations)
        rows.append((population, evaluations / elapsed, elapsed / generations))
    return rows


def expensive_case(client: Client, data_root: Path, population: int, generations: int,
                   repeats: int = 2) -> dict[str, Any]:
    """Ridge cross-validation on the flights: 2 workers against the same search in-process.

    The two are run alternately ``repeats`` times, so that a slow spell of the machine
    does not land on one side only; the first distributed run is the first job of fresh
    workers (each reads the flights once). The machine's own ceiling, the same
    evaluations split over two plain processes, is measured too.
    """
    objective = get_objective("ridge_cv")
    config = build_config("ga", objective, objective.dim or 0, None, population, generations,
                          seed=11, batch=population)
    local_runs, lepton_runs = [], []
    for _ in tqdm(range(repeats), desc="expensive objective", unit="pair"):
        started = time.perf_counter()
        local = run_in_process(config, lambda candidates: (
            evaluate(objective, candidates, data_root).values, 0))
        local_runs.append(time.perf_counter() - started)
        lepton_runs.append(run_lepton(client, "ga", "ridge_cv", 11, population, generations,
                                      dim=config.dim))

    evaluations = lepton_runs[0][1]
    return {"evaluations": evaluations, "one_process_s": local_runs,
            "two_workers_s": [run[2] for run in lepton_runs],
            "per_evaluation_ms": 1000 * statistics.median(local_runs) / evaluations,
            "same_best": all(run[0] == local.best_f for run in lepton_runs),
            "ceiling": two_process_ceiling(objective, data_root, population)}


def two_process_ceiling(objective: Any, data_root: Path, population: int) -> float:
    """How much faster two plain processes score one population than one process.

    No Celery, no Redis: what two cores of this machine give on this objective.
    """
    lower, upper = (np.array(bound) for bound in objective.default_bounds(objective.dim))
    candidates = lower + np.random.default_rng(5).random((population, lower.size)) * (
        upper - lower)
    halves = [candidates[:population // 2], candidates[population // 2:]]
    evaluate(objective, candidates[:1], data_root)
    started = time.perf_counter()
    evaluate(objective, candidates, data_root)
    one_s = time.perf_counter() - started
    with multiprocessing.Pool(2, initializer=evaluate,
                              initargs=(objective, candidates[:1], data_root)) as pool:
        pool.starmap(evaluate, [(objective, half[:1], data_root) for half in halves])
        started = time.perf_counter()
        pool.starmap(evaluate, [(objective, half, data_root) for half in halves])
        two_s = time.perf_counter() - started
    return one_s / two_s


def plot_throughput(rows: list[tuple[int, float, float]], deap_rate: float,
                    pyswarms_rate: float, out_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot([row[0] for row in rows], [row[1] for row in rows], "o-",
              label=f"Lepton PSO, {WORKERS} workers")
    axes.axhline(deap_rate, color="tab:green", linestyle="--", label="DEAP eaSimple (pop 200)")
    axes.axhline(5 * deap_rate, color="tab:green", linestyle=":", label="5 x DEAP")
    axes.axhline(pyswarms_rate, color="tab:red", linestyle="--",
                 label="pyswarms, one process (pop 200)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("population (candidates per generation)")
    axes.set_ylabel("evaluations per second (10-D Rastrigin)")
    axes.set_title("Throughput on a cheap objective")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--population", type=int, default=200)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--plot", type=Path, default=Path("optimization_throughput.png"))
    parser.add_argument("--expensive-only", action="store_true",
                        help="only measure the expensive objective, 2 workers against one")
    args = parser.parse_args()
    quiet_logging()
    # One BLAS thread per process, here and in the workers (they inherit the
    # environment), so "one process" means one core and two workers mean two; numpy's
    # matrix products would otherwise spread over every core and oversubscribe the pool.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    threadpool_limits(limits=1)

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          "(the machine is shared: other work competes for the same cores)")
    with tempfile.TemporaryDirectory(prefix="lepton-bench-") as directory:
        data_root = Path(directory)
        write_flights_csv(data_root)
        settings = Settings.from_env({"LEPTON_DATA_ROOT": str(data_root),
                                      "LEPTON_RESULTS_DIR": str(data_root / "results")})
        with LocalCluster(settings, workers=WORKERS) as cluster:
            client = Client(cluster.settings)
            try:
                if not args.expensive_only:
                    measure_cheap(client, args)
                print_expensive(expensive_case(client, data_root, population=48,
                                               generations=4))
            finally:
                client.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def measure_cheap(client: Client, args: argparse.Namespace) -> None:
    """Quality, throughput, fixed cost and population sweep on the cheap objectives."""
    rows = compare_quality(client, args.seeds, args.population, args.generations)
    costs = fixed_cost(client)
    sweep = throughput_by_population(client, (200, 2_000, 20_000, 50_000))
    pool_rate = statistics.mean(
        run[1] / run[2] for run in (run_deap("rastrigin", seed, args.population,
                                             args.generations, WORKERS)
                                    for seed in range(3)))

    print_quality(rows, args.population, args.generations, args.seeds)
    deap_rate = statistics.mean(row["evals_per_s"] for row in rows
                                if row["method"] == "DEAP eaSimple")
    pyswarms_rate = statistics.mean(row["evals_per_s"] for row in rows
                                    if row["method"] == "pyswarms GlobalBest")
    print(f"\nDEAP eaSimple with multiprocessing.Pool({WORKERS}) on rastrigin: "
          f"{pool_rate:,.0f} evaluations/s")
    print("\nfixed cost of one Lepton generation (chord round trip + step + checkpoint):")
    for label, seconds in costs.items():
        print(f"  {label}: {1000 * seconds:.1f} ms")
    print("\nLepton PSO throughput by population (10-D rastrigin, batch = population / 2):")
    print(f"{'population':>11}{'evals/s':>12}{'ms/gen':>9}{'vs DEAP':>9}{'vs pyswarms':>13}")
    for population, rate, per_generation in sweep:
        print(f"{population:>11,}{rate:>12,.0f}{1000 * per_generation:>9.1f}"
              f"{rate / deap_rate:>8.2f}x{rate / pyswarms_rate:>12.2f}x")
    plot_throughput(sweep, deap_rate, pyswarms_rate, args.plot)
    print(f"wrote {args.plot}")


def print_expensive(expensive: dict[str, Any]) -> None:
    evaluations = expensive["evaluations"]
    print(f"\nexpensive objective (ridge_cv on 327k flights, "
          f"{expensive['per_evaluation_ms']:.0f} ms per evaluation in one process), "
          f"{evaluations} evaluations; same best value: {expensive['same_best']}")
    pairs = zip(expensive["one_process_s"], expensive["two_workers_s"])
    for index, (one, two) in enumerate(pairs):
        label = "first job of fresh workers" if index == 0 else "workers already warm"
        print(f"  one process {one:.2f} s ({evaluations / one:.2f} evals/s), {WORKERS} workers "
              f"{two:.2f} s ({evaluations / two:.2f} evals/s): {one / two:.2f}x ({label})")
    print(f"  ceiling of this machine, the same evaluations in two plain processes: "
          f"{expensive['ceiling']:.2f}x")


if __name__ == "__main__":
    main()
