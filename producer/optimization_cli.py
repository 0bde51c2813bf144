"""The ``lepton optimize``, ``lepton resume`` and ``lepton stop`` commands."""

import argparse
import re
import sys
from typing import Any

from producer.arguments import job_id, output_path, plot_path, positive_int
from producer.client import Client
from producer.local_cluster import LocalCluster
from producer.optimization import (
    DEFAULT_GENERATIONS,
    DEFAULT_POPULATION,
    plan_optimization,
    resume_optimization,
    save_checkpoint_file,
    stop_optimization,
    submit_config,
    wait_optimization,
)
from producer.run import connect
from tasks.errors import InvalidBounds, InvalidSearchSetting, LeptonError
from tasks.objectives import get_objective
from tasks.search import ALGORITHMS
from workers.settings import Settings

# Values such as ``-5.12:5.12`` or ``-1e-9`` are arguments, not options: no option of
# these commands starts with a digit after its dash.
NEGATIVE_VALUE = re.compile(r"^-(\.?\d|inf)", re.IGNORECASE)

BEST_X_SHOWN = 12


def add_commands(subparsers: Any) -> None:
    """Add ``optimize``, ``resume`` and ``stop`` to the ``lepton`` command."""
    optimize = subparsers.add_parser(
        "optimize", help="minimise an objective with a genetic algorithm or particle swarm")
    optimize.add_argument("algorithm", choices=ALGORITHMS,
                          help="ga: genetic algorithm; pso: particle swarm")
    optimize.add_argument("--objective", required=True,
                          help="a registered objective: sphere, rosenbrock, rastrigin, ackley, "
                               "griewank, schwefel, ridge_cv, or one of LEPTON_OBJECTIVES_MODULE")
    optimize.add_argument("--dim", type=int, default=None,
                          help="dimensions (default: the objective's own, if it has one)")
    optimize.add_argument("--bounds", nargs="+", default=None, metavar="LO:HI",
                          help="one LO:HI for every dimension, or one per dimension "
                               "(default: the objective's usual box)")
    optimize.add_argument("--population", type=int, default=DEFAULT_POPULATION)
    optimize.add_argument("--generations", type=int, default=DEFAULT_GENERATIONS,
                          help="most generations to evaluate")
    optimize.add_argument("--seed", type=int, default=None,
                          help="same seed, same result (default: random, reported)")
    optimize.add_argument("--batch", type=int, default=None,
                          help="candidates per fitness task (default: population / workers)")
    optimize.add_argument("--target", type=float, default=None,
                          help="stop once the best fitness is at most this")
    optimize.add_argument("--stall", type=int, default=None,
                          help="stop after this many generations without improvement")
    _add_output_options(optimize)
    optimize._negative_number_matcher = NEGATIVE_VALUE
    optimize.set_defaults(handler=run_optimize)

    resume = subparsers.add_parser("resume", help="continue a stopped optimisation job")
    resume.add_argument("job_id", type=job_id)
    _add_output_options(resume)
    resume.set_defaults(handler=run_resume)

    stop = subparsers.add_parser("stop", help="stop an optimisation job after its generation")
    stop.add_argument("job_id", type=job_id)
    stop.set_defaults(handler=run_stop)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="worker processes of the local cluster (default: one per core)")
    parser.add_argument("--out", type=output_path, default=None, help="also write the result here")
    parser.add_argument("--plot", type=plot_path, default=None,
                        help="convergence plot (default: <results dir>/<job id>.png)")
    parser.add_argument("--detach", action="store_true",
                        help="print the job id and return (needs LEPTON_BROKER_URL)")


def run_optimize(args: argparse.Namespace) -> int:
    """Submit the search, watch it, then print and write the result."""
    settings = Settings.from_env()
    objective = get_objective(args.objective, settings.objectives_module)
    bounds = parse_bounds(args.bounds) if args.bounds else None
    # One LO:HI per dimension says how many dimensions there are.
    per_dimension = len(bounds) if bounds is not None and len(bounds) > 1 else None
    dim = next((value for value in (args.dim, per_dimension, objective.dim)
                if value is not None), None)
    if dim is None:
        raise InvalidSearchSetting(f"objective {args.objective!r} takes any dimension: "
                                   "give --dim, or one --bounds LO:HI per dimension")
    local = not settings.broker_url
    workers = (args.workers or settings.worker_concurrency) if local else (args.workers or 1)
    # Refuse bad input before a local cluster is started for nothing.
    config = plan_optimization(settings, args.algorithm, args.objective, dim, bounds,
                               population=args.population, generations=args.generations,
                               seed=args.seed, batch=args.batch, target=args.target,
                               stall=args.stall, workers=workers)

    if args.detach:
        client = _detached_client(settings)
        try:
            print(submit_config(client, config))
        finally:
            client.close()
        return 0

    with connect(settings, args.workers) as (client, cluster):
        job_id = submit_config(client, config)
        print(f"job {job_id}", file=sys.stderr)
        result = _watch(client, job_id, cluster)
    _report(result, args, settings)
    return 0


def run_resume(args: argparse.Namespace) -> int:
    """Continue a job from its checkpoint and watch it to the end."""
    settings = Settings.from_env()
    if args.detach:
        client = _detached_client(settings)
        try:
            print(resume_optimization(client, args.job_id))
        finally:
            client.close()
        return 0
    with connect(settings, args.workers) as (client, cluster):
        resume_optimization(client, args.job_id)
        result = _watch(client, args.job_id, cluster)
    _report(result, args, settings)
    return 0


def run_stop(args: argparse.Namespace) -> int:
    """Ask a job on the configured cluster to stop after its current generation."""
    client = _detached_client(Settings.from_env())
    try:
        progress = stop_optimization(client, args.job_id)
    finally:
        client.close()
    if progress.status != "running":
        print(f"job {args.job_id} is already {progress.status}")
    else:
        print(f"job {args.job_id} stops after generation {progress.generation + 1}; "
              f"`lepton resume {args.job_id}` continues it")
    return 0


def parse_bounds(texts: list[str]) -> list[tuple[float, float]]:
    """Parse ``LO:HI`` items (space- or comma-separated) into (lo, hi) pairs."""
    pairs = []
    for item in (part for text in texts for part in text.split(",") if part):
        low, separator, high = item.partition(":")
        try:
            if not separator:
                raise ValueError
            pairs.append((float(low), float(high)))
        except ValueError:
            raise InvalidBounds(f"--bounds {item!r}: expected LO:HI, e.g. -5.12:5.12"
                                ) from None
    return pairs


def format_result(result: dict[str, Any]) -> str:
    """Return the result as a few human-readable lines."""
    best_f = result["best_f"]
    best_x = result["best_x"] or []
    shown = ", ".join(f"{value:.6g}" for value in best_x[:BEST_X_SHOWN])
    more = f", ... ({len(best_x)} values)" if len(best_x) > BEST_X_SHOWN else ""
    return "\n".join([
        f"{result['algorithm']} on {result['objective']}: {result['dim']} dimensions, "
        f"population {result['population']}, seed {result['seed']}",
        f"best f   {'no valid evaluation' if best_f is None else f'{best_f:.10g}'}",
        f"best x   [{shown}{more}]",
        f"evaluations {result['evaluations']:,} in {result['generations']} generations "
        f"(stopped by {result['stop_reason']}), invalid {result['invalid_evaluations']:,}, "
        f"elapsed {result['elapsed_s']:.2f} s",
        f"job {result['job_id']}",
    ])


def _watch(client: Client, job_id: str, cluster: LocalCluster | None) -> dict[str, Any]:
    try:
        return wait_optimization(client, job_id,
                                 health_check=cluster.check_alive if cluster else None)
    except KeyboardInterrupt:
        if cluster is not None:
            # The local Redis dies with this command: keep the checkpoint on disk.
            save_checkpoint_file(client, job_id)
        print(f"lepton: `lepton resume {job_id}` continues this job", file=sys.stderr)
        raise


def _report(result: dict[str, Any], args: argparse.Namespace, settings: Settings) -> None:
    from producer.cli import save_result
    from producer.optimization_plot import plot_convergence

    print(format_result(result))
    save_result(result, settings, args.out)
    plot_path = args.plot or settings.results_dir / f"{result['job_id']}.png"
    plot_convergence(result, plot_path)
    print(f"wrote {plot_path}")


def _detached_client(settings: Settings) -> Client:
    if not settings.broker_url:
        raise LeptonError("this needs a running cluster: set LEPTON_BROKER_URL")
    return Client(settings)
