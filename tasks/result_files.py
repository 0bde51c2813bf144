"""Files that readers may open at any moment: written whole, then renamed into place."""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.data_root import result_path
from tasks.errors import JobFailed


def write_atomically(final: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a temporary file beside ``final``, then rename it over ``final``.

    A reader sees the old file or the new one, never half of one; the process id keeps
    two writers from sharing a temporary file.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    write(temporary)
    temporary.replace(final)
    return final


def write_json(final: Path, data: Any, indent: int | None = None) -> Path:
    """Write ``data`` as JSON to ``final`` atomically and return the path."""
    text = json.dumps(data, indent=indent) + "\n"
    return write_atomically(final, lambda temporary: temporary.write_text(text))


def write_result(results_dir: Path, result: dict[str, Any]) -> Path:
    """Write ``<results_dir>/<job_id>.json`` atomically and return its path."""
    return write_json(result_path(results_dir, result["job_id"]), result, indent=2)


def read_result(results_dir: Path, job_id: str) -> dict[str, Any] | None:
    """Return the result written by :func:`write_result` for ``job_id``, or None."""
    path = result_path(results_dir, job_id)
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as error:
        raise JobFailed(f"{path}: not a readable result ({error})") from error
