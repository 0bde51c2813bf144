"""Confine every file a worker opens to the configured data root."""

import re
from pathlib import Path

from tasks.errors import DatasetNotFound, PathOutsideDataRoot

# Job ids as Lepton makes them (uuid4 strings) or users choose them: a plain file name.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def is_job_id(text: str) -> bool:
    """Return whether ``text`` is a valid job id, which is also a safe file name."""
    return JOB_ID.fullmatch(text) is not None


def relative_to_root(path: Path, data_root: Path) -> str:
    """Return ``path`` (absolute, or relative to the working directory) relative to the root.

    Symlinks are resolved first, so a link that points out of the root is refused.
    """
    resolved = path.expanduser().resolve()
    root = data_root.expanduser().resolve()
    if not root.is_dir():
        raise DatasetNotFound(f"the data root {root} is not a directory (LEPTON_DATA_ROOT)")
    if not resolved.is_relative_to(root):
        raise PathOutsideDataRoot(
            f"{path}: outside the data root {root} (set LEPTON_DATA_ROOT or move the file)"
        )
    if not resolved.is_file():
        raise DatasetNotFound(f"{path}: no such file")
    return resolved.relative_to(root).as_posix()


def resolve_in_root(relative_path: str, data_root: Path) -> Path:
    """Return the file a task may open for ``relative_path``, refusing any escape."""
    candidate = Path(relative_path)
    if candidate.is_absolute():
        raise PathOutsideDataRoot(f"{relative_path}: absolute paths are refused")
    root = data_root.expanduser().resolve()
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise PathOutsideDataRoot(f"{relative_path}: resolves outside the data root")
    if not resolved.is_file():
        raise DatasetNotFound(f"{relative_path}: no such file under the data root")
    return resolved


def result_path(results_dir: Path, job_id: str) -> Path:
    """Return ``<results_dir>/<job_id>.json``, refusing an id that would leave the directory."""
    if not is_job_id(job_id):
        raise PathOutsideDataRoot(f"job id {job_id!r} is not a plain name: refusing to write "
                                  f"a result outside {results_dir}")
    return results_dir / f"{job_id}.json"
