"""Lepton's configuration: one frozen object built from ``LEPTON_*`` environment variables."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tasks.errors import ConfigError


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
    objectives_module: str | None = None

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
            objectives_module=_module_name(env, "LEPTON_OBJECTIVES_MODULE"),
        )
        for url in (settings.broker_url, settings.result_backend):
            if url and not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"unsupported broker or backend URL {url!r}: use redis://"
                                  " or rediss://")
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
        }
        if self.broker_url:
            env["LEPTON_BROKER_URL"] = self.broker_url
        if self.result_backend:
            env["LEPTON_RESULT_BACKEND"] = self.result_backend
        if self.objectives_module:
            env["LEPTON_OBJECTIVES_MODULE"] = self.objectives_module
        return env


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
