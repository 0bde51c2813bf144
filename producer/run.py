"""One call that runs a job: on the configured cluster, or on a local one started for it."""

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from producer.client import Client
from producer.local_cluster import LocalCluster
from workers.settings import Settings

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def connect(settings: Settings | None = None, workers: int | None = None
            ) -> Iterator[tuple[Client, LocalCluster | None]]:
    """Yield a client for the configured broker, or for a fresh local cluster.

    With ``LEPTON_BROKER_URL`` unset, a private Redis and ``workers`` worker processes
    are started and stopped again when the block exits, even on Ctrl-C.
    """
    settings = settings or Settings.from_env()
    if settings.broker_url:
        client = Client(settings)
        try:
            yield client, None
        finally:
            client.close()
        return
    with LocalCluster(settings, workers) as cluster:
        client = Client(cluster.settings)
        try:
            yield client, cluster
        finally:
            client.close()


def regress(path: str | Path, target: str, features: list[str] | None = None, *,
            intercept: bool = True, chunk_rows: int | None = None, workers: int | None = None,
            settings: Settings | None = None, progress: bool = True,
            timeout_s: float | None = None) -> dict[str, Any]:
    """Fit ``target ~ features`` by least squares over the cluster and return the result.

    The result dict has the keys described in the README (``coefficients``,
    ``std_errors``, ``r_squared``, ...); it is also written to the results directory.
    """
    with connect(settings, workers) as (client, cluster):
        worker_count = cluster.workers if cluster else (workers or 1)
        job_id = client.submit_regression(path, target, features, intercept, chunk_rows,
                                          worker_count)
        health_check = cluster.check_alive if cluster else None
        return client.wait(job_id, progress=progress, timeout_s=timeout_s,
                           health_check=health_check)
