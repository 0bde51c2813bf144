"""A throw-away cluster of several worker nodes: the shape a shard set is spread over.

:class:`producer.local_cluster.LocalCluster` runs one node with a pool of processes;
shards are owned by nodes, so look-ups on this machine use one node per worker instead,
each with its own heartbeat and queue. Nodes run look-ups in their own process (Celery's
solo pool): a prefork child would hold a second copy of the shards, and handing each
task to it added about 0.7 ms to a look-up's median (measured by
``benchmarks/shard_lookup.py``). Nodes can be added, stopped or killed while the
cluster runs, as membership changes do on a real cluster.
"""

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from producer.local_cluster import (
    STARTUP_TIMEOUT_S,
    RedisServer,
    ThrowAwayCluster,
    WorkerProcess,
)
from producer.shard_client import ShardClient
from tasks.errors import ClusterError
from workers.membership import live_members
from workers.settings import Settings

logger = logging.getLogger(__name__)

POLL_S = 0.05


class NodeCluster(ThrowAwayCluster):
    """A private redis-server plus ``nodes`` worker nodes, as a context manager."""

    def __init__(self, settings: Settings, nodes: int = 2, concurrency: int = 1,
                 log_dir: Path | None = None, pool: str = "solo") -> None:
        if nodes < 1:
            raise ClusterError(f"a node cluster needs at least one node, got {nodes}")
        self.redis_server = RedisServer()
        self.settings = settings.with_broker(self.redis_server.url)
        self.initial_nodes = nodes
        self.concurrency = concurrency
        self.pool = pool
        self.log_dir = log_dir
        self.nodes: dict[str, WorkerProcess] = {}
        self._started = 0

    @property
    def workers(self) -> int:
        """Running worker nodes."""
        return len(self.nodes)

    def start(self) -> None:
        """Start Redis and the initial nodes, and wait until every node is live."""
        self.redis_server.start()
        started = [self._start_node() for _ in range(self.initial_nodes)]
        self.wait_live(started)

    def add_node(self) -> str:
        """Start one more node, wait until it is live, and return its name."""
        name = self._start_node()
        self.wait_live([name])
        return name

    def stop_node(self, name: str) -> None:
        """Stop a node cleanly: it leaves the live set at once."""
        self.nodes.pop(name).stop()

    def kill_node(self, name: str) -> None:
        """Kill a node with SIGKILL: it stays in the live set until its heartbeat ages out."""
        node = self.nodes.pop(name)
        if node.process is None or node.process.poll() is not None:
            return
        # The pool processes would be orphaned: find them while they are still children.
        children = _children_of(node.process.pid)
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def wait_live(self, names: list[str], timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until every node in ``names`` has sent a heartbeat, or raise."""
        client = redis.Redis.from_url(self.settings.result_backend or "")
        deadline = time.monotonic() + timeout_s
        try:
            while not set(names) <= set(live_members(client, self.settings.member_timeout_s)):
                for name in names:
                    self.nodes[name].check_alive()
                if time.monotonic() > deadline:
                    raise ClusterError(f"nodes {names} did not start within {timeout_s} s")
                time.sleep(POLL_S)
        finally:
            client.close()
        logger.info("nodes live nodes=%d port=%d", len(self.nodes), self.redis_server.port)

    def check_alive(self) -> None:
        """Raise :class:`ClusterError` if Redis or every node has died."""
        process = self.redis_server.process
        if process is None or process.poll() is not None:
            raise ClusterError("the local redis-server exited")
        if self.nodes and all(node.process is None or node.process.poll() is not None
                              for node in self.nodes.values()):
            raise ClusterError("every worker node of the local cluster exited")

    def stop(self) -> None:
        """Stop every node, then Redis."""
        for name in list(self.nodes):
            self.nodes.pop(name).stop()
        self.redis_server.stop()

    def _start_node(self) -> str:
        self._started += 1
        name = f"node{self._started}-{os.getpid()}@{socket.gethostname()}"
        node = WorkerProcess(self.settings, self.concurrency, name, self.pool)
        log_path = self.log_dir / f"node{self._started}.log" if self.log_dir else None
        node.start(log_path)
        self.nodes[name] = node
        return name


def _children_of(pid: int) -> list[int]:
    """Return the ids of the processes whose parent is ``pid`` (read from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid):
            children.append(int(entry.name))
    return children


@contextlib.contextmanager
def connect_shards(settings: Settings | None = None, workers: int | None = None
                   ) -> Iterator[tuple[ShardClient, NodeCluster | None]]:
    """Yield a ShardClient for the configured broker, or for a fresh local node cluster.

    With ``LEPTON_BROKER_URL`` unset, a private Redis and ``workers`` single-process
    worker nodes (default 2) are started and stopped when the block exits.
    """
    settings = settings or Settings.from_env()
    if settings.broker_url:
        with ShardClient(settings) as shards:
            yield shards, None
        return
    with NodeCluster(settings, workers or 2) as cluster, ShardClient(
            cluster.settings, cluster.check_alive) as shards:
        yield shards, cluster
