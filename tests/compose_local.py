"""Run docker-compose.yml's services as local processes, as Compose would run containers.

There is no Docker engine here, so each service's command runs on this machine with the
service's own environment, and the differences a container would hide are mapped:

- a service name used as a host (``redis:6379``) becomes ``127.0.0.1`` and a free port;
- a volume mounted at ``/data`` becomes a local directory, one per volume source, so
  services that share a volume in Compose share a directory here;
- ``%h`` in a node name becomes the replica's own host name, as each container has one;
- a server told to listen on every interface listens on loopback only.

Commands of services built from the Dockerfile go through the image's entry point script.
"""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from producer.local_cluster import find_redis_server, free_port
from tests.compose_file import PROJECT_ROOT, command_of, environment_of

ENTRY_POINT = PROJECT_ROOT / "docker" / "entrypoint.sh"
REDIS_CONTAINER_PORT = 6379
STOP_TIMEOUT_S = 30.0


class LocalCompose:
    """The services of one compose file, started as processes below ``workdir``."""

    def __init__(self, compose: Mapping[str, Any], workdir: Path) -> None:
        self.compose = compose
        self.workdir = workdir
        self.ports = {("redis", REDIS_CONTAINER_PORT): free_port()}
        for name, service in compose["services"].items():
            for mapping in service.get("ports", []):
                container_port = int(str(mapping).rsplit(":", 1)[1])
                self.ports[(name, container_port)] = free_port()
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def port(self, service: str, container_port: int) -> int:
        """Return the local port standing for ``service``'s ``container_port``."""
        return self.ports[(service, container_port)]

    def volume_dir(self, source: str) -> Path:
        """Return the local directory standing for a named volume or a bind mount."""
        directory = self.workdir / "volumes" / re.sub(r"[^\w.-]", "_", source)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def prepare(self, name: str, command: list[str] | None = None,
                hostname: str | None = None) -> tuple[list[str], dict[str, str]]:
        """Return the local argv and environment of service ``name`` (or of ``command``)."""
        service = self.compose["services"][name]
        argv = [self._localize(name, arg) for arg in (command or command_of(service))]
        if hostname is not None:
            argv = [arg.replace("%h", hostname) for arg in argv]
        argv = [arg.replace("--address=0.0.0.0", "--address=127.0.0.1") for arg in argv]
        for (owner, container_port), local_port in self.ports.items():
            if owner == name:
                argv = [arg.replace(f"--port={container_port}", f"--port={local_port}")
                        for arg in argv]

        if name == "redis":
            # The compose command passes extra arguments on to redis-server ("$@").
            argv += ["--port", str(self.port("redis", REDIS_CONTAINER_PORT)),
                     "--bind", "127.0.0.1"]
        elif "build" in service:
            argv = ["sh", str(ENTRY_POINT), *argv]

        inherited = {key: value for key, value in os.environ.items()
                     if not key.startswith(("LEPTON_", "CELERY_", "FLOWER_", "REDIS"))}
        tools = [str(Path(find_redis_server()).parent), str(Path(sys.executable).parent)]
        env = {**inherited,
               "PATH": os.pathsep.join([*tools, os.environ.get("PATH", "")]),
               "PYTHONPATH": str(PROJECT_ROOT)}
        for key, value in environment_of(service).items():
            env[key] = self._localize(name, value)
        return argv, env

    def start(self, name: str, command: list[str] | None = None,
              hostname: str | None = None) -> subprocess.Popen[bytes]:
        """Start one container of service ``name`` as a process; its output goes to a log."""
        argv, env = self.prepare(name, command, hostname)
        log_path = self.workdir / f"{hostname or name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       cwd=self.workdir)
        self.processes.append((hostname or name, process))
        return process

    def run(self, name: str, command: list[str], timeout_s: float
            ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` once in service ``name``, as ``docker compose run --rm`` does."""
        argv, env = self.prepare(name, command)
        return subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=timeout_s, cwd=self.workdir)

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        """Send SIGTERM, as ``docker compose stop`` does, and return the exit code."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return int(process.returncode)

    def stop_all(self) -> None:
        """Stop every process still running, last started first."""
        for _, process in reversed(self.processes):
            self.stop(process)

    def logs(self) -> str:
        """Return the tail of every service's log, for a failing test's message."""
        parts = []
        for log_path in sorted(self.workdir.glob("*.log")):
            parts.append(f"--- {log_path.name}\n{log_path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def _localize(self, name: str, text: str) -> str:
        for (owner, container_port), local_port in self.ports.items():
            text = re.sub(rf"(?<=[@/]){re.escape(owner)}:{container_port}\b",
                          f"127.0.0.1:{local_port}", text)
        for volume in self.compose["services"][name].get("volumes", []):
            source, mount_point = str(volume).split(":")[:2]
            text = re.sub(rf"(?<![\w.-]){re.escape(mount_point)}(?=/|$|[\s\"'])",
                          str(self.volume_dir(source)), text)
        return text
