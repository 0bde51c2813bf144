"""Which worker nodes are alive: heartbeats in Redis, and a queue of each node's own.

Every worker node (one ``celery worker`` process, whatever its pool size) writes its
node name into the sorted set ``lepton:members`` with the Redis server's clock as score,
every ``LEPTON_HEARTBEAT_INTERVAL_S``. The live set is the nodes whose last heartbeat is
younger than ``LEPTON_MEMBER_TIMEOUT_S``; using the server's clock keeps the verdict
independent of the hosts' clocks. A node that stops cleanly removes itself at once; one
that dies drops out when its heartbeat ages past the timeout.

Each node also consumes ``shard.<nodename>``, so a producer can send a shard lookup to
the node that owns the shard. Only nodes that consume the ``shard-lookup`` queue take
part: a worker pool kept for other kinds of work owns no shards.
"""

import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis
from celery.signals import celeryd_after_setup, worker_ready, worker_shutting_down

from workers.app import settings_of
from workers.queues import SHARD_LOOKUP_QUEUE
from workers.settings import Settings

logger = logging.getLogger(__name__)

MEMBERS_KEY = "lepton:members"

# Entries this many timeouts old are deleted, so the set does not grow with dead names.
PRUNE_AFTER_TIMEOUTS = 100

_BEAT_SCRIPT = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZADD', KEYS[1], seconds, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', seconds - tonumber(ARGV[2]))
return tostring(seconds)
"""

_LIVE_SCRIPT = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], seconds - tonumber(ARGV[1]), '+inf')
"""

_heartbeats: dict[str, "Heartbeat"] = {}
# Nodes of this process that consume look-ups (one, unless embedded in a test).
_members: set[str] = set()


def node_queue(nodename: str) -> str:
    """Return the name of the queue only ``nodename`` consumes."""
    return f"shard.{nodename}"


def beat(client: redis.Redis, nodename: str, timeout_s: float) -> None:
    """Record that ``nodename`` is alive now."""
    client.eval(_BEAT_SCRIPT, 1, MEMBERS_KEY, nodename,
                repr(timeout_s * PRUNE_AFTER_TIMEOUTS))


def live_members(client: redis.Redis, timeout_s: float, unlink: Sequence[str] = ()
                 ) -> list[str]:
    """Return the sorted names of the nodes whose last heartbeat is younger than the timeout.

    ``unlink`` names keys to delete in the same round trip (a caller's stale results).
    """
    with client.pipeline(transaction=False) as pipe:
        if unlink:
            pipe.unlink(*unlink)
        pipe.eval(_LIVE_SCRIPT, 1, MEMBERS_KEY, repr(timeout_s))
        names = pipe.execute()[-1]
    return sorted(name.decode() if isinstance(name, bytes) else name for name in names)


def leave(client: redis.Redis, nodename: str) -> None:
    """Remove ``nodename`` from the live set at once (a clean shutdown)."""
    client.zrem(MEMBERS_KEY, nodename)


class Heartbeat(threading.Thread):
    """A daemon thread of the worker's main process that beats until stopped."""

    def __init__(self, settings: Settings, nodename: str) -> None:
        super().__init__(name=f"lepton-heartbeat-{nodename}", daemon=True)
        self.settings = settings
        self.nodename = nodename
        self.client = redis.Redis.from_url(settings.result_backend or "",
                                           socket_timeout=settings.member_timeout_s)
        self.stopped = threading.Event()

    def run(self) -> None:
        """Beat every interval; a Redis outage is logged and retried, never fatal."""
        failing = False
        while not self.stopped.is_set():
            try:
                beat(self.client, self.nodename, self.settings.member_timeout_s)
                if failing:
                    logger.warning("heartbeat restored node=%s", self.nodename)
                failing = False
            except redis.RedisError as error:
                if not failing:
                    logger.warning("heartbeat failed node=%s error=%s", self.nodename, error)
                failing = True
            self.stopped.wait(self.settings.heartbeat_interval_s)

    def stop(self) -> None:
        """Stop beating and leave the live set."""
        self.stopped.set()
        self.join(self.settings.heartbeat_interval_s + 1.0)
        try:
            leave(self.client, self.nodename)
        except redis.RedisError as error:
            logger.warning("leave failed node=%s error=%s", self.nodename, error)
        self.client.close()
        logger.info("node left node=%s", self.nodename)


@celeryd_after_setup.connect
def _consume_own_queue(sender: str, instance: Any, **_: Any) -> None:
    queues = instance.app.amqp.queues
    if queues.consume_from is not None and SHARD_LOOKUP_QUEUE not in queues.consume_from:
        return
    name = node_queue(sender)
    # Its own direct exchange, as a producer declares it when it first sends there.
    queues.select_add(name, exchange=name, exchange_type="direct", routing_key=name)
    _members.add(sender)


@worker_ready.connect
def _start_heartbeat(sender: Any, **_: Any) -> None:
    nodename = sender.hostname
    if nodename in _heartbeats or nodename not in _members:
        return
    heartbeat = Heartbeat(settings_of(sender.app), nodename)
    # The first beat is synchronous so the node is live once the worker is ready.
    beat(heartbeat.client, nodename, heartbeat.settings.member_timeout_s)
    heartbeat.start()
    _heartbeats[nodename] = heartbeat
    logger.info("node joined node=%s queue=%s", nodename, node_queue(nodename))


@worker_shutting_down.connect
def _stop_heartbeat(sender: str, **_: Any) -> None:
    heartbeat = _heartbeats.pop(sender, None)
    if heartbeat is not None:
        heartbeat.stop()
