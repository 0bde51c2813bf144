"""The Celery application: JSON messages, late acks, task events, one queue per kind of work."""

from typing import cast

from celery import Celery

from tasks.errors import ConfigError
from workers.queues import (
    ALL_QUEUES,
    FITNESS_QUEUE,
    MAP_QUEUE,
    REDUCE_QUEUE,
    SHARD_LOOKUP_QUEUE,
)
from workers.settings import Settings

__all__ = ["ALL_QUEUES", "MAP_QUEUE", "REDUCE_QUEUE", "TASK_MODULES", "create_app",
           "settings_of"]

TASK_MODULES = ["tasks.regression", "tasks.optimization", "tasks.shard_lookup"]


def create_app(settings: Settings) -> Celery:
    """Return a Celery app wired to the settings' Redis broker and result backend."""
    if not settings.broker_url:
        raise ConfigError("no broker configured: set LEPTON_BROKER_URL")
    app = Celery("lepton", broker=settings.broker_url, backend=settings.result_backend,
                 include=TASK_MODULES, set_as_current=False)
    app.conf.update(
        # JSON only: a pickled message could run arbitrary code on a worker.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A task whose worker dies is redelivered instead of lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        # Events let Flower show every task from sent to done.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        result_extended=True,
        result_expires=settings.result_expires_s,
        task_routes={
            "lepton.regression.map": {"queue": MAP_QUEUE},
            "lepton.regression.reduce": {"queue": REDUCE_QUEUE},
            "lepton.optimization.fitness": {"queue": FITNESS_QUEUE},
            # The step too: a long optimisation keeps to its own queue and pool.
            "lepton.optimization.generation": {"queue": FITNESS_QUEUE},
            # Look-ups go to the owner's own queue, chosen per message by the producer.
            "lepton.shard.merge": {"queue": SHARD_LOOKUP_QUEUE},
        },
        task_default_queue=REDUCE_QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.conf["lepton_settings"] = settings
    return app


def settings_of(app: Celery) -> Settings:
    """Return the Lepton settings an app was created with."""
    return cast(Settings, app.conf["lepton_settings"])
