"""A cluster reached over rediss:// with the TLS options in the URL, as the README says."""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from producer.client import Client
from producer.local_cluster import WorkerProcess, find_redis_server, free_port
from tasks.errors import BrokerUnavailable
from workers.app import create_app
from workers.settings import Settings

PASSWORD = "tls-test-password"
STARTUP_S = 60.0


def openssl(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)


def make_certificates(directory: Path) -> None:
    """Write a private CA (ca.pem) and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key = directory / "ca.key", directory / "ca.pem", directory / "server.key"
    request, extensions = directory / "server.csr", directory / "san.cnf"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
            "/CN=lepton test CA", "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(request))
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "1", "-extfile", str(extensions),
            "-out", str(directory / "server.pem"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks only TLS on a free port; yields the port and the CA file."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    directory = tmp_path_factory.mktemp("tls")
    make_certificates(directory)
    port = free_port()
    server = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(directory / "server.pem"),
         "--tls-key-file", str(directory / "server.key"),
         "--tls-ca-cert-file", str(directory / "ca.pem"), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, ssl=True,
                        ssl_ca_certs=str(directory / "ca.pem"), socket_timeout=2)
    deadline = time.monotonic() + STARTUP_S
    while not _answers(probe):
        if server.poll() is not None:
            pytest.skip("this redis-server was built without TLS")
        assert time.monotonic() < deadline, "the TLS redis-server did not start"
        time.sleep(0.05)
    probe.close()
    yield port, directory / "ca.pem"
    server.terminate()
    server.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def tls_settings(data_root: Path, port: int, query: str) -> Settings:
    url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?{query}"
    return Settings.from_env({"LEPTON_DATA_ROOT": str(data_root),
                              "LEPTON_RESULTS_DIR": str(data_root / "results"),
                              "LEPTON_BROKER_URL": url, "LEPTON_REDIS_TIMEOUT_S": "5"})


def test_job_runs_over_tls_with_the_certificate_checked(tls_redis: tuple[int, Path],
                                                        tmp_path: Path) -> None:
    port, ca = tls_redis
    settings = tls_settings(tmp_path, port, f"ssl_cert_reqs=required&ssl_ca_certs={ca}")
    (tmp_path / "tls.csv").write_text("x,y\n" + "".join(f"{x},{4 * x + 2}\n"
                                                        for x in range(12)))
    worker = WorkerProcess(settings, 1, "tls@test")
    worker.start(tmp_path / "worker.log")
    app = create_app(settings)
    client = Client(settings)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not app.control.ping(destination=["tls@test"], timeout=0.3):
            worker.check_alive()
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
        job_id = client.submit_regression(tmp_path / "tls.csv", "y", ["x"], chunk_rows=4)
        result = client.wait(job_id, progress=False, timeout_s=60)
    finally:
        client.close()
        app.close()
        worker.stop()

    np.testing.assert_allclose(result["coefficients"], [2.0, 4.0], rtol=1e-12)
    assert result["n_chunks"] == 3


def test_server_certificate_from_an_unknown_ca_is_refused(tls_redis: tuple[int, Path],
                                                          tmp_path: Path) -> None:
    port, _ = tls_redis
    client = Client(tls_settings(tmp_path, port, "ssl_cert_reqs=required"))
    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable, match="certificate verify failed"):
            client.result("any-job")
    finally:
        client.close()

    assert time.monotonic() - started < 5.0
