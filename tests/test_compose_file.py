"""docker-compose.yml and the Dockerfile are checked without a Docker engine."""

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.compose_file import (
    EXAMPLE_ENV,
    PROJECT_ROOT,
    ComposeError,
    check_compose,
    check_entry_points,
    duration_s,
    interpolate,
    load_compose,
)


def test_compose_file_and_dockerfile_pass_the_structure_check() -> None:
    compose = load_compose()

    check_compose(compose)
    check_entry_points(compose)


@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "FLOWER_PASSWORD"])
def test_compose_refuses_to_start_without_a_password(missing: str) -> None:
    env = {name: value for name, value in EXAMPLE_ENV.items() if name != missing}

    with pytest.raises(ComposeError, match=f"required variable {missing} is not set"):
        load_compose(env)


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}

    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $SET $$HOME", env) == (
        "x d  d x $HOME")
    assert interpolate({"a": ["${SET}"], "b": 5}, env) == {"a": ["x"], "b": 5}
    assert duration_s("1m30s") == 90 and duration_s("10m") == 600
    with pytest.raises(ComposeError, match="must be set"):
        interpolate("${UNSET:?must be set}", env)


def broken(change: str) -> dict[str, Any]:
    compose = copy.deepcopy(load_compose())
    services = compose["services"]
    if change == "flower open to all":
        services["flower"]["ports"] = ["0.0.0.0:5555:5555"]
    elif change == "no append-only file":
        services["redis"]["command"] = ["redis-server", "--requirepass", "x"]
    elif change == "same node name everywhere":
        services["worker"]["command"] = ["lepton", "worker", "--hostname", "worker@box"]
    elif change == "fitness queue orphaned":
        del services["worker-fitness"]
    elif change == "short grace period":
        services["worker"]["stop_grace_period"] = "10s"
    elif change == "producer always on":
        services["producer"]["profiles"] = []
    elif change == "unknown option":
        services["worker"]["command"] = ["lepton", "worker", "--hostname", "w@%h", "--qs", "x"]
    return compose


@pytest.mark.parametrize("change", ["flower open to all", "no append-only file",
                                    "same node name everywhere", "fitness queue orphaned",
                                    "short grace period", "producer always on",
                                    "unknown option"])
def test_structure_check_catches_a_broken_compose_file(change: str) -> None:
    with pytest.raises(ComposeError):
        check_compose(broken(change))


@pytest.mark.parametrize("argv", [["--help"], ["lepton", "--help"], ["worker", "--help"]])
def test_image_entry_point_runs_lepton(argv: list[str]) -> None:
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                                  os.environ.get("PATH", "")])}
    shown = subprocess.run(["sh", str(PROJECT_ROOT / "docker" / "entrypoint.sh"), *argv],
                           env=env, capture_output=True, text=True, timeout=60)

    assert shown.returncode == 0, shown.stderr
    expected = "usage: lepton worker" if argv[0] == "worker" else "usage: lepton"
    assert shown.stdout.startswith(expected)
