"""Argument types shared by the ``lepton`` subcommands: refuse bad values at parse time."""

import argparse
from pathlib import Path

from tasks.data_root import is_job_id
from tasks.errors import LeptonError

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def positive_int(text: str) -> int:
    """An integer of at least 1 (``--workers``, ``--chunk-rows``, ``--concurrency``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def column_list(text: str) -> list[str]:
    """Comma-separated column names (``--features A,B``); none of them may be empty."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected column names separated by "
                                         "commas, e.g. dep_delay,distance")
    return names


def job_id(text: str) -> str:
    """A job id as Lepton makes them: letters, digits, ``-`` and ``_``."""
    if not is_job_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id")
    return text


def output_path(text: str) -> Path:
    """A file to write once the job is done (``--out``): checked before the job runs.

    Missing directories on the way are created when the file is written; an existing
    directory in the file's place, or a file in a directory's, is refused now.
    """
    if not text:
        raise argparse.ArgumentTypeError("an empty path: name a file")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory: name a file in it")
    for parent in path.parents:
        # A dangling symbolic link does not "exist", but no directory can be made there.
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {str(parent)!r} is not a "
                                                 "directory")
            break
    return path


def refuse_overwriting_inputs(inputs: list[Path], outputs: list[Path | None]) -> None:
    """Raise :class:`LeptonError` if an output file would replace an input file."""
    resolved = {path.resolve() for path in inputs}
    for output in outputs:
        if output is not None and output.resolve() in resolved:
            raise LeptonError(f"{output} is the input file: write the result elsewhere")


def plot_path(text: str) -> Path:
    """A picture file whose suffix matplotlib can write; checked before the job runs."""
    path = output_path(text)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a plot must end in {', '.join(PLOT_SUFFIXES)}")
    return path
