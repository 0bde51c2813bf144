"""Run a Celery worker for Lepton: ``python -m workers`` or ``lepton worker``."""

import argparse
import os
import sys

# Each pool process is one unit of parallelism; multithreaded BLAS inside every process
# would oversubscribe the cores (measured: map tasks ran 2x slower on 2 cores). This runs
# before numpy is first imported by the task modules.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from workers.app import ALL_QUEUES, create_app  # noqa: E402
from workers.settings import Settings  # noqa: E402


def run_worker(argv: list[str] | None = None) -> None:
    """Start a worker consuming every Lepton queue with the configured concurrency."""
    parser = argparse.ArgumentParser(prog="lepton worker")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="pool processes (default LEPTON_WORKER_CONCURRENCY or cores)")
    parser.add_argument("--queues", default=",".join(ALL_QUEUES))
    parser.add_argument("--hostname", default=None, help="node name, e.g. w1@%%h")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--fast-start", action="store_true",
                        help="skip mingle and gossip (used by the local cluster)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    app = create_app(settings)
    concurrency = args.concurrency or settings.worker_concurrency
    worker_argv = ["worker", f"--concurrency={concurrency}", f"--queues={args.queues}",
                   f"--loglevel={args.loglevel}", "--task-events"]
    if args.hostname:
        worker_argv.append(f"--hostname={args.hostname}")
    if args.fast_start:
        worker_argv += ["--without-mingle", "--without-gossip"]
    app.worker_main(worker_argv)


if __name__ == "__main__":
    run_worker(sys.argv[1:])
