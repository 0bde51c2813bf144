"""Run a Celery worker for Lepton: ``python -m workers`` or ``lepton worker``."""

import argparse
import sys
from typing import Any

import redis
from celery.signals import worker_process_init
from threadpoolctl import threadpool_limits

from tasks.errors import BrokerUnavailable, ConfigError, LeptonError
from workers.app import create_app
from workers.queues import parse_queues
from workers.settings import Settings


@worker_process_init.connect
def limit_blas_threads(**_: Any) -> None:
    """Give each pool process one BLAS thread.

    Each pool process is one unit of parallelism; multithreaded BLAS inside every
    process oversubscribes the cores (measured: map tasks ran 2x slower on 2 cores).
    Done per process after the fork, so it holds however numpy was imported.
    """
    threadpool_limits(limits=1)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the worker's options to ``parser`` (shared by ``lepton worker``)."""
    parser.add_argument("--concurrency", type=int, default=None,
                        help="pool processes (default LEPTON_WORKER_CONCURRENCY or cores)")
    parser.add_argument("--queues", default=None,
                        help="comma-separated queues: map, reduce, fitness, shard-lookup "
                        "(default LEPTON_WORKER_QUEUES or all)")
    parser.add_argument("--hostname", default=None,
                        help="node name, unique per worker, e.g. worker@%%h (%%h: host name)")
    parser.add_argument("--pool", choices=("prefork", "solo"), default="prefork",
                        help="prefork: a pool of processes (default); solo: run tasks in "
                        "the worker process itself, one at a time, which saves a hand-off "
                        "per task")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--fast-start", action="store_true",
                        help="skip mingle and gossip (used by the local cluster)")


def check_worker_arguments(args: argparse.Namespace) -> None:
    """Raise :class:`LeptonError` for options that cannot start a worker."""
    if args.concurrency is not None and args.concurrency < 1:
        raise LeptonError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.pool == "solo" and (args.concurrency or 1) > 1:
        raise LeptonError("--pool solo runs one task at a time: drop --concurrency, "
                          "or use --pool prefork")


def check_password(settings: Settings) -> None:
    """Fail at once when Redis refuses the password; Celery would retry for minutes.

    An unreachable Redis is left to Celery's retries: in a compose stack the worker may
    well start first.
    """
    client = redis.Redis.from_url(settings.broker_url or "", socket_timeout=5)
    try:
        client.ping()
    except (redis.AuthenticationError, redis.ResponseError) as error:
        raise BrokerUnavailable(f"Redis refused the worker's password: {error}") from error
    except redis.ConnectionError:
        pass
    finally:
        client.close()


def start_worker(args: argparse.Namespace) -> None:
    """Start a worker on the configured queues (default: all) with the configured concurrency.

    SIGTERM asks for a warm shutdown: running tasks finish, nothing new is taken.
    """
    settings = Settings.from_env()
    if not settings.broker_url:
        raise ConfigError("a worker serves a cluster: set LEPTON_BROKER_URL to its Redis "
                          "(commands run without one start their own workers)")
    check_password(settings)
    app = create_app(settings)
    # Tasks a worker enqueues (chord callbacks, the next generation) follow each other
    # milliseconds apart: a "task-sent" event each cost 6 % of an optimisation
    # generation. Flower still sees them from "task-received" on; producers keep
    # sending the event for the work they submit.
    app.conf.task_send_sent_event = False
    concurrency = args.concurrency or settings.worker_concurrency
    queues = parse_queues(args.queues) if args.queues else settings.worker_queues
    worker_argv = ["worker", f"--pool={args.pool}", f"--concurrency={concurrency}",
                   f"--queues={','.join(queues)}", f"--loglevel={args.loglevel}",
                   "--task-events"]
    if args.hostname:
        worker_argv.append(f"--hostname={args.hostname}")
    if args.fast_start:
        worker_argv += ["--without-mingle", "--without-gossip"]
    if args.pool == "solo":
        # Tasks run in this process: it is the one unit of parallelism (see above).
        threadpool_limits(limits=1)
    app.worker_main(worker_argv)


def run_worker(argv: list[str] | None = None) -> None:
    """Parse the worker's options from ``argv`` and start it."""
    parser = argparse.ArgumentParser(prog="python -m workers")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    try:
        check_worker_arguments(args)
        start_worker(args)
    except LeptonError as error:
        sys.exit(f"python -m workers: error: {error}")


if __name__ == "__main__":
    run_worker(sys.argv[1:])
