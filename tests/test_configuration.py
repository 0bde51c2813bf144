"""Configuration from ``LEPTON_*`` variables is validated at start with clear messages."""

import subprocess
import sys
from pathlib import Path

import pytest

from producer.client import Client
from producer.local_cluster import RedisServer
from producer.status import read_status
from producer.task_labels import chunk_label, reduce_label
from tasks.errors import ConfigError
from workers.queues import ALL_QUEUES, parse_queues
from workers.settings import Settings, redact_url


def test_tls_url_without_certificate_policy_is_refused_naming_the_variable() -> None:
    url = "rediss://:hunter2@redis.example:6380/0"

    with pytest.raises(ConfigError, match=r"LEPTON_BROKER_URL=.*ssl_cert_reqs=required") as raised:
        Settings.from_env({"LEPTON_BROKER_URL": url})

    assert "hunter2" not in str(raised.value)


def test_tls_url_with_certificate_options_is_accepted() -> None:
    url = "rediss://:pw@redis:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/certs/ca.pem"

    settings = Settings.from_env({"LEPTON_BROKER_URL": url})

    assert settings.broker_url == settings.result_backend == url


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ConfigError, match="amqp://guest:\\*\\*\\*@rabbit.*not supported"):
        Settings.from_env({"LEPTON_BROKER_URL": "amqp://guest:guest@rabbit//"})


def test_password_is_hidden_when_a_url_is_shown() -> None:
    assert redact_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("redis://user:s3cret@redis/1") == "redis://user:***@redis/1"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_worker_queues_come_from_the_environment_and_unknown_ones_are_refused() -> None:
    settings = Settings.from_env({"LEPTON_WORKER_QUEUES": "fitness, map,fitness"})

    assert settings.worker_queues == ("fitness", "map")
    assert Settings.from_env({}).worker_queues == ALL_QUEUES
    with pytest.raises(ConfigError, match="LEPTON_WORKER_QUEUES: unknown queue 'mapp'"):
        Settings.from_env({"LEPTON_WORKER_QUEUES": "mapp"})
    with pytest.raises(ConfigError, match="names no queue"):
        parse_queues(" , ")


def test_worker_command_refuses_an_unknown_queue(cluster_env: dict[str, str]) -> None:
    started = subprocess.run([sys.executable, "-m", "producer.cli", "worker", "--queues",
                              "map,shard_lookup"], env=cluster_env, capture_output=True,
                             text=True, timeout=60)

    assert started.returncode == 1
    assert "unknown queue 'shard_lookup'" in started.stderr
    assert "shard-lookup" in started.stderr


def test_chunk_rows_setting_is_the_default_chunk_size(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("x,y\n" + "".join(f"{x},{x}\n" for x in range(25)))
    server = RedisServer()
    server.start()
    settings = Settings.from_env({"LEPTON_DATA_ROOT": str(tmp_path),
                                  "LEPTON_CHUNK_ROWS": "10"}).with_broker(server.url)
    client = Client(settings)
    try:
        status = read_status(client, client.submit_regression(path, "y", ["x"]))
    finally:
        client.close()
        server.stop()

    assert status.chunks_total == 3


def test_flower_labels_name_the_chunk_range_not_the_data() -> None:
    job = {"job_id": "1a2b3c4d-0000", "kind": "regression", "n_chunks": 12, "target": "y",
           "features": ["a", "b"], "source": "/data/f.csv", "n_rows": 600}
    csv = {"index": 2, "path": "f.csv", "start": 100, "end": 200, "first_line": 102,
           "rows": 50}
    parquet = {"index": 0, "path": "f.parquet", "row_group": 1, "offset": 40, "rows": 10}
    npy = {"index": 11, "path": "f.npy", "start": 550, "rows": 50}

    assert chunk_label(job, csv) == ("job=1a2b3c4d chunk 3/12 f.csv lines 102-151 "
                                     "bytes [100, 200) (50 rows)")
    assert "row group 1 rows [40, 50)" in chunk_label(job, parquet)
    assert "chunk 12/12 f.npy rows [550, 600)" in chunk_label(job, npy)
    assert reduce_label(job) == ("{'job': 'regression 1a2b3c4d y ~ a,b on /data/f.csv "
                                 "(600 rows, 12 chunks)'}")
