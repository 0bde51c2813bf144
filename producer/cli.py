"""The ``lepton`` command."""

import argparse
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from producer.arguments import (
    column_list,
    job_id,
    output_path,
    plot_path,
    positive_int,
    refuse_overwriting_inputs,
)
from producer.client import Client, local_result
from producer.run import regress
from tasks.errors import LeptonError
from workers.__main__ import add_worker_arguments, check_worker_arguments, start_worker
from workers.settings import Settings

logger = logging.getLogger("lepton")

PLOT_SAMPLE_ROWS = 5000

# Modules that add their own subcommands through ``add_commands(subparsers)``.
COMMAND_MODULES: list[str] = ["producer.status", "producer.optimization_cli",
                              "producer.shard_cli"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``lepton`` command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # timeout(1), CI runners and a closed terminal send TERM or HUP: stop the local
    # cluster as on Ctrl-C. (`lepton worker` gets Celery's own handlers instead.)
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _interrupt)
    logging.basicConfig(level=logging.WARNING if not args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.handler(args) or 0)
    except LeptonError as error:
        print(f"lepton: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lepton: interrupted; local cluster stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`lepton status ID | head`); say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _interrupt(number: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(number).name)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every ``lepton`` subcommand."""
    parser = argparse.ArgumentParser(prog="lepton", description="Distributed compute on "
                                     "Celery and Redis.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log lifecycle events")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="fit arrival delay on the 2013 NYC flights")
    demo.add_argument("--workers", type=positive_int, default=None)
    demo.add_argument("--chunk-rows", type=positive_int, default=None)
    demo.add_argument("--out", type=output_path, default=None)
    demo.add_argument("--plot", type=plot_path, default=None)
    demo.set_defaults(handler=run_demo)

    fit = commands.add_parser("regress", help="least-squares regression over a dataset")
    fit.add_argument("path", type=Path, help="CSV, Parquet or NPY file under the data root")
    fit.add_argument("--target", required=True)
    fit.add_argument("--features", type=column_list, default=None,
                     help="comma-separated columns (default: every other numeric column)")
    fit.add_argument("--no-intercept", action="store_true")
    fit.add_argument("--chunk-rows", type=positive_int, default=None)
    fit.add_argument("--workers", type=positive_int, default=None,
                     help="worker processes of the local cluster (default: one per core)")
    fit.add_argument("--out", type=output_path, default=None, help="also write the result here")
    fit.add_argument("--plot", type=plot_path, default=None, help="write a PNG plot here")
    fit.add_argument("--detach", action="store_true",
                     help="print the job id and return (needs LEPTON_BROKER_URL)")
    fit.set_defaults(handler=run_regress)

    result = commands.add_parser("result", help="print the result of a job")
    result.add_argument("job_id", type=job_id)
    result.set_defaults(handler=run_result)

    worker = commands.add_parser("worker", help="run a worker for LEPTON_BROKER_URL")
    add_worker_arguments(worker)
    worker.set_defaults(handler=run_worker)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(commands)
    return parser


def run_demo(args: argparse.Namespace) -> int:
    """Write the flights to a CSV under the data root, then run ``lepton regress`` on it."""
    from producer.demo import write_flights_csv

    settings = Settings.from_env()
    path = write_flights_csv(settings.data_root)
    print(f"wrote {path}")
    out = args.out or settings.results_dir / "flights-regression.json"
    plot = args.plot or settings.results_dir / "flights-regression.png"
    argv = [str(path), "--target", "arr_delay", "--features", "dep_delay,distance,air_time",
            "--out", str(out), "--plot", str(plot)]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    if args.chunk_rows:
        argv += ["--chunk-rows", str(args.chunk_rows)]
    return run_regress(build_parser().parse_args(["regress", *argv]))


def run_regress(args: argparse.Namespace) -> int:
    """Fit, print a table, and write the JSON and plot files asked for."""
    refuse_overwriting_inputs([args.path], [args.out, args.plot])
    features = args.features
    settings = Settings.from_env()
    if args.detach:
        if not settings.broker_url:
            raise LeptonError("--detach needs a running cluster: set LEPTON_BROKER_URL")
        client = Client(settings)
        try:
            job_id = client.submit_regression(args.path, args.target, features,
                                              not args.no_intercept, args.chunk_rows,
                                              args.workers or 1)
        finally:
            client.close()
        print(job_id)
        return 0

    result = regress(args.path, args.target, features, intercept=not args.no_intercept,
                     chunk_rows=args.chunk_rows, workers=args.workers, settings=settings)
    print(format_result(result))
    save_result(result, settings, args.out)
    if args.plot:
        write_plot(result, args.path, args.plot)
        print(f"wrote {args.plot}")
    return 0


def save_result(result: dict[str, Any], settings: Settings, out: Path | None) -> None:
    """Say where the workers wrote the result, and write a copy to ``out`` if asked."""
    print(f"result: {settings.results_dir / (result['job_id'] + '.json')}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


def write_plot(result: dict[str, Any], path: Path, plot_path: Path) -> None:
    """Plot the result with a sample of the data read on this machine."""
    from producer.plot import plot_regression
    from tasks.formats import read_sample

    used = [name for name in result["features"] if name != "intercept"] + [result["target"]]
    sample = read_sample(path.expanduser().resolve(), used, PLOT_SAMPLE_ROWS)
    plot_regression(result, plot_path, sample)


def run_result(args: argparse.Namespace) -> int:
    """Print a job's result as JSON (or its error).

    Without a cluster, the result of a job run on a local cluster is read from the
    results directory, where every finished job leaves a copy.
    """
    settings = Settings.from_env()
    if not settings.broker_url:
        print(json.dumps(local_result(settings, args.job_id), indent=2))
        return 0
    client = Client(settings)
    try:
        print(json.dumps(client.result(args.job_id), indent=2))
    finally:
        client.close()
    return 0


def run_worker(args: argparse.Namespace) -> int:
    """Start a worker in this process (see ``lepton worker --help``)."""
    check_worker_arguments(args)
    start_worker(args)
    return 0


def format_result(result: dict[str, Any]) -> str:
    """Return the result as a small human-readable table."""
    lines = [f"regression of {result['target']} on {result['source']}",
             f"{'term':<16}{'coefficient':>16}{'std error':>14}"]
    for name, value, error in zip(result["features"], result["coefficients"],
                                  result["std_errors"]):
        lines.append(f"{name:<16}{value:>16.6g}{error:>14.4g}")
    lines += [
        f"R² {result['r_squared']:.6f}   residual std {result['residual_std']:.6g}   "
        f"condition number {result['condition_number']:.3g}",
        f"rows used {result['n_rows']:,}   rows dropped (missing values or blank) "
        f"{result['n_dropped']:,}   chunks {result['n_chunks']}   "
        f"elapsed {result['elapsed_s']:.2f} s",
        f"job {result['job_id']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
