"""Lepton's queues: one per kind of work, so a long optimisation cannot starve a regression.

A worker consumes the queues named in ``--queues`` or ``LEPTON_WORKER_QUEUES``; running
one worker pool per queue (see ``docker-compose.yml``) isolates the kinds of work.
"""

from tasks.errors import ConfigError

MAP_QUEUE = "map"
REDUCE_QUEUE = "reduce"
FITNESS_QUEUE = "fitness"
SHARD_LOOKUP_QUEUE = "shard-lookup"
ALL_QUEUES = (MAP_QUEUE, REDUCE_QUEUE, FITNESS_QUEUE, SHARD_LOOKUP_QUEUE)


def parse_queues(text: str, source: str = "--queues") -> tuple[str, ...]:
    """Return the queue names of a comma-separated list, in order, without repeats.

    ``source`` names where the list came from, for the error message.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ConfigError(f"{source}={text!r} names no queue (known: {', '.join(ALL_QUEUES)})")
    unknown = [name for name in names if name not in ALL_QUEUES]
    if unknown:
        raise ConfigError(f"{source}: unknown queue {unknown[0]!r} "
                          f"(known: {', '.join(ALL_QUEUES)})")
    return tuple(dict.fromkeys(names))
