"""Lepton's configuration: one frozen object built from ``LEPTON_*`` environment variables."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tasks.errors import ConfigError
from workers.queues import ALL_QUEUES, parse_queues


@dataclass(frozen=True)
class Settings:
    """Every setting a producer or worker process needs; see the README's table."""

    broker_url: str | None
    result_backend: str | None
    data_root: Path
    results_dir: Path
    worker_concurrency: int
    result_expires_s: int
    visibility_timeout_s: int
    worker_queues: tuple[str, ...] = ALL_QUEUES
    chunk_rows: int | None = None
    redis_timeout_s: int = 10
    objectives_module: str | None = None
    heartbeat_interval_s: float = 2.0
    member_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read and validate the ``LEPTON_*`` variables (defaults: local cluster, cwd)."""
        env = os.environ if environ is None else environ
        broker_url = env.get("LEPTON_BROKER_URL") or None
        data_root = Path(env.get("LEPTON_DATA_ROOT") or Path.cwd()).expanduser().resolve()
        results_dir = Path(env.get("LEPTON_RESULTS_DIR") or data_root / "lepton-results")
        settings = cls(
            broker_url=broker_url,
            result_backend=env.get("LEPTON_RESULT_BACKEND") or broker_url,
            data_root=data_root,
            results_dir=results_dir.expanduser().resolve(),
            worker_concurrency=_positive_int(env, "LEPTON_WORKER_CONCURRENCY",
                                             os.cpu_count() or 1),
            result_expires_s=_positive_int(env, "LEPTON_RESULT_EXPIRES_S", 7 * 86400),
            visibility_timeout_s=_positive_int(env, "LEPTON_VISIBILITY_TIMEOUT_S", 3600),
            worker_queues=parse_queues(env.get("LEPTON_WORKER_QUEUES") or ",".join(ALL_QUEUES),
                                       "LEPTON_WORKER_QUEUES"),
            chunk_rows=_positive_int(env, "LEPTON_CHUNK_ROWS", 0) or None,
            redis_timeout_s=_positive_int(env, "LEPTON_REDIS_TIMEOUT_S", 10),
            objectives_module=_module_name(env, "LEPTON_OBJECTIVES_MODULE"),
            heartbeat_interval_s=_positive_float(env, "LEPTON_HEARTBEAT_INTERVAL_S", 2.0),
            member_timeout_s=_positive_float(env, "LEPTON_MEMBER_TIMEOUT_S", 10.0),
        )
        for name, url in (("LEPTON_BROKER_URL", settings.broker_url),
                          ("LEPTON_RESULT_BACKEND", settings.result_backend)):
            if url:
                _check_redis_url(name, url)
        if settings.member_timeout_s <= settings.heartbeat_interval_s:
            raise ConfigError("LEPTON_MEMBER_TIMEOUT_S must exceed LEPTON_HEARTBEAT_INTERVAL_S"
                              " or live workers would be dropped between heartbeats")
        return settings

    def with_broker(self, url: str) -> "Settings":
        """Return a copy that uses ``url`` as both broker and result backend."""
        return replace(self, broker_url=url, result_backend=url)

    def as_env(self) -> dict[str, str]:
        """Return the ``LEPTON_*`` variables that rebuild these settings in a child process."""
        env = {
            "LEPTON_DATA_ROOT": str(self.data_root),
            "LEPTON_RESULTS_DIR": str(self.results_dir),
            "LEPTON_WORKER_CONCURRENCY": str(self.worker_concurrency),
            "LEPTON_RESULT_EXPIRES_S": str(self.result_expires_s),
            "LEPTON_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
            "LEPTON_WORKER_QUEUES": ",".join(self.worker_queues),
            "LEPTON_REDIS_TIMEOUT_S": str(self.redis_timeout_s),
            "LEPTON_HEARTBEAT_INTERVAL_S": str(self.heartbeat_interval_s),
            "LEPTON_MEMBER_TIMEOUT_S": str(self.member_timeout_s),
        }
        if self.chunk_rows:
            env["LEPTON_CHUNK_ROWS"] = str(self.chunk_rows)
        if self.broker_url:
            env["LEPTON_BROKER_URL"] = self.broker_url
        if self.result_backend:
            env["LEPTON_RESULT_BACKEND"] = self.result_backend
        if self.objectives_module:
            env["LEPTON_OBJECTIVES_MODULE"] = self.objectives_module
        return env


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _check_redis_url(name: str, url: str) -> None:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name}={redact_url(url)!r} is not supported: use redis://, "
                          "rediss:// or unix://")
    # Celery refuses a TLS URL that does not say how to check the server's certificate;
    # saying so here names the variable instead of failing deep inside the backend.
    if url.startswith("rediss://") and "ssl_cert_reqs=" not in urlsplit(url).query:
        raise ConfigError(f"{name}={redact_url(url)!r}: a rediss:// URL needs "
                          "?ssl_cert_reqs=required (with ssl_ca_certs=PATH for a private CA), "
                          "optional or none")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1")
    return value


def _module_name(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name) or None
    if raw is not None and not all(part.isidentifier() for part in raw.split(".")):
        raise ConfigError(f"{name}={raw!r} is not a dotted module name")
    return raw


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value
