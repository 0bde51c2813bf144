"""Shared fixtures: one private Redis and one worker pool for the whole session.

Tests that stop Redis or kill workers start their own :class:`LocalCluster` instead.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.client import Client
from producer.local_cluster import LocalCluster
from workers.settings import Settings

SESSION_WORKERS = 2


def make_settings(data_root: Path) -> Settings:
    """Settings for a cluster whose data root is ``data_root`` (no broker yet)."""
    return Settings.from_env({
        "LEPTON_DATA_ROOT": str(data_root),
        "LEPTON_RESULTS_DIR": str(data_root / "results"),
        "LEPTON_RESULT_EXPIRES_S": "3600",
        "LEPTON_OBJECTIVES_MODULE": "tests.objective_fixtures",
    })


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data root every session worker reads below."""
    return tmp_path_factory.mktemp("data-root")


@pytest.fixture(scope="session")
def cluster(data_root: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[LocalCluster]:
    """A real redis-server on a free port and a real worker with two pool processes."""
    log_path = tmp_path_factory.mktemp("logs") / "worker.log"
    with LocalCluster(make_settings(data_root), workers=SESSION_WORKERS,
                      log_path=log_path) as running:
        yield running


@pytest.fixture(scope="session")
def client(cluster: LocalCluster) -> Iterator[Client]:
    """A producer client connected to the session cluster."""
    connected = Client(cluster.settings)
    yield connected
    connected.close()


@pytest.fixture(scope="session")
def cluster_env(cluster: LocalCluster) -> dict[str, str]:
    """Environment for a ``lepton`` subprocess that should use the session cluster."""
    return {**os.environ, **cluster.settings.as_env()}
