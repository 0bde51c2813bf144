"""Read docker-compose.yml as Compose does, and check its structure without a Docker engine.

CI runs ``docker-compose config`` when that tool is installed; this check runs always
(``python -m tests.compose_file``): variables interpolated as Compose does, required
services and settings present, every command accepted by the real ``lepton`` parser,
every queue consumed by some worker pool, and the Dockerfile's entry point present.
"""

import argparse
import importlib.metadata
import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from producer.cli import build_parser, run_worker
from workers.queues import ALL_QUEUES, parse_queues

PROJECT_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE_PATH = PROJECT_ROOT / "Dockerfile"
# Values for the variables the compose file requires, as a user's .env would set them.
EXAMPLE_ENV = {"REDIS_PASSWORD": "example-redis-password",
               "FLOWER_PASSWORD": "example-flower-password"}
# Commands that the image's entry point runs as given (docker/entrypoint.sh).
PASSTHROUGH_COMMANDS = ("lepton", "celery", "python", "python3", "sh")
MIN_GRACE_PERIOD_S = 60

VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                      r"|\$(?P<bare>[A-Za-z_]\w*)")


class ComposeError(Exception):
    """docker-compose.yml or the Dockerfile breaks a rule the deployment relies on."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Substitute ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` as Compose does."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op is not None and op.endswith("?") and missing:
            raise ComposeError(f"required variable {name} is not set: {arg}")
        if op is not None and op.endswith("-") and missing:
            return str(arg)
        return current or ""

    return VARIABLE.sub(substitute, value)


def load_compose(env: Mapping[str, str] | None = None,
                 path: Path = COMPOSE_PATH) -> dict[str, Any]:
    """Return the compose file with anchors merged and variables interpolated from ``env``."""
    raw = yaml.safe_load(path.read_text())
    return dict(interpolate(raw, EXAMPLE_ENV if env is None else env))


def command_of(service: Mapping[str, Any]) -> list[str]:
    """Return a service's command as an argument list."""
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """Return a service's environment as a dict (Compose allows a list of KEY=VALUE too)."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def duration_s(text: str) -> float:
    """Return a Compose duration such as ``1m30s`` or ``10m`` in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ComposeError(f"not a duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def worker_services(compose: Mapping[str, Any]) -> dict[str, list[str]]:
    """Return each service that runs ``lepton worker``, with its command."""
    return {name: command_of(service) for name, service in compose["services"].items()
            if command_of(service)[:2] == ["lepton", "worker"]}


def check_compose(compose: Mapping[str, Any]) -> None:
    """Raise :class:`ComposeError` naming the first rule the compose file breaks."""
    services = compose.get("services") or {}
    for required in ("redis", "worker", "flower", "producer"):
        if required not in services:
            raise ComposeError(f"no '{required}' service")
    for name, service in services.items():
        if "image" not in service and "build" not in service:
            raise ComposeError(f"service {name} has neither image nor build")
        _check_volumes(name, service, compose.get("volumes") or {})
    _check_redis(services["redis"])
    _check_workers(compose)
    _check_flower(services["flower"])
    _check_producer(services["producer"], services["worker"])


def check_entry_points(compose: Mapping[str, Any], dockerfile: Path = DOCKERFILE_PATH) -> None:
    """Check the image's entry point exists and every service command resolves in the image."""
    text = dockerfile.read_text()
    if not re.search(r"^FROM python:[\d.]+-slim", text, re.MULTILINE):
        raise ComposeError("the image must start from a slim Python base")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    if not users or users[-1] in ("root", "0"):
        raise ComposeError("the image must run as a non-root USER")
    dependencies = text.find("pip install -r")
    if not 0 <= text.find("COPY pyproject.toml") < dependencies < text.find("COPY producer"):
        raise ComposeError("dependencies must be installed in a layer before the code is copied")

    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.MULTILINE)
    copied = re.search(r"^COPY (\S+) /usr/local/bin/(\S+)", text, re.MULTILINE)
    if not entry or not copied or copied.group(2) != entry.group(1):
        raise ComposeError("ENTRYPOINT must be the script copied to /usr/local/bin")
    script = PROJECT_ROOT / copied.group(1)
    if not script.is_file() or not os.access(script, os.X_OK):
        raise ComposeError(f"entry point {script} is missing or not executable")

    for name, service in compose["services"].items():
        if "build" in service:
            _check_image_command(name, command_of(service))


def parse_lepton(name: str, command: list[str]) -> argparse.Namespace:
    """Parse a service's ``lepton ...`` command with the real parser, as the image would."""
    try:
        return build_parser().parse_args(command[1:])
    except SystemExit:
        raise ComposeError(f"service {name}: `{shlex.join(command)}` is not a valid "
                           "lepton command") from None


def _check_image_command(name: str, command: list[str]) -> None:
    if not command or command[0] not in PASSTHROUGH_COMMANDS:
        raise ComposeError(f"service {name}: command must start with one of "
                           f"{', '.join(PASSTHROUGH_COMMANDS)}")
    if command[0] == "lepton":
        parse_lepton(name, command)
    if command[0] == "celery":
        subcommands = {point.name for point in
                       importlib.metadata.entry_points(group="celery.commands")}
        if command[1] not in subcommands:
            raise ComposeError(f"service {name}: celery has no '{command[1]}' command")


def _check_volumes(name: str, service: Mapping[str, Any], declared: Mapping[str, Any]) -> None:
    for volume in service.get("volumes", []):
        source = str(volume).split(":")[0]
        if not source.startswith((".", "/")) and source not in declared:
            raise ComposeError(f"service {name} mounts undeclared volume {source}")


def _check_redis(redis: Mapping[str, Any]) -> None:
    script = " ".join(command_of(redis))
    if "--requirepass" not in script or "REDIS_PASSWORD" not in environment_of(redis):
        raise ComposeError("redis must require the password from REDIS_PASSWORD")
    if "--appendonly yes" not in script:
        raise ComposeError("redis must keep an append-only file")
    if "healthcheck" not in redis:
        raise ComposeError("redis needs a health check")
    if redis.get("ports"):
        raise ComposeError("redis must not publish a port")


def _check_workers(compose: Mapping[str, Any]) -> None:
    workers = worker_services(compose)
    if "worker" not in workers:
        raise ComposeError("the 'worker' service must run `lepton worker`")
    consumed: set[str] = set()
    for name, command in workers.items():
        service = compose["services"][name]
        arguments = parse_lepton(name, command)
        if arguments.handler is not run_worker or "%h" not in (arguments.hostname or ""):
            raise ComposeError(f"service {name}: each node needs a unique --hostname NAME@%h")
        consumed.update(parse_queues(arguments.queues or ",".join(ALL_QUEUES)))
        # A solo node runs one task at a time; a prefork pool's size must be chosen.
        if (arguments.pool != "solo"
                and "LEPTON_WORKER_CONCURRENCY" not in environment_of(service)):
            raise ComposeError(f"service {name}: set LEPTON_WORKER_CONCURRENCY")
        if service.get("stop_signal", "SIGTERM") != "SIGTERM":
            raise ComposeError(f"service {name}: stop with SIGTERM for a warm shutdown")
        if duration_s(str(service.get("stop_grace_period", "10s"))) < MIN_GRACE_PERIOD_S:
            raise ComposeError(f"service {name}: stop_grace_period shorter than a chunk")
        if "container_name" in service:
            raise ComposeError(f"service {name}: container_name prevents --scale")
    orphans = [queue for queue in ALL_QUEUES if queue not in consumed]
    if orphans:
        raise ComposeError(f"no worker pool consumes queue {orphans[0]}")


def _check_flower(flower: Mapping[str, Any]) -> None:
    auth = environment_of(flower).get("FLOWER_BASIC_AUTH", "")
    if ":" not in auth or auth.endswith(":"):
        raise ComposeError("flower needs FLOWER_BASIC_AUTH=user:password")
    for port in flower.get("ports", []):
        if not str(port).startswith("127.0.0.1:"):
            raise ComposeError(f"flower must be bound to 127.0.0.1 by default, not {port}")


def _check_producer(producer: Mapping[str, Any], worker: Mapping[str, Any]) -> None:
    if "producer" not in producer.get("profiles", []):
        raise ComposeError("the producer must sit behind the 'producer' profile")
    if str(producer.get("restart", "no")) != "no":
        raise ComposeError("the producer runs once: restart must be \"no\"")
    if producer.get("volumes") != worker.get("volumes"):
        raise ComposeError("producer and workers must share the data volume")
    root = environment_of(producer).get("LEPTON_DATA_ROOT")
    if root != environment_of(worker).get("LEPTON_DATA_ROOT") or not any(
            str(volume).split(":")[1] == root for volume in producer.get("volumes", [])):
        raise ComposeError("LEPTON_DATA_ROOT must be the shared volume's mount point")


def main() -> int:
    """Check docker-compose.yml and the Dockerfile; print what failed and return 1."""
    try:
        compose = load_compose()
        check_compose(compose)
        check_entry_points(compose)
    except ComposeError as error:
        print(f"docker-compose.yml: {error}", file=sys.stderr)
        return 1
    print(f"docker-compose.yml: {len(compose['services'])} services, structure and entry "
          "points ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
