"""Read and check the keys of a look-up: from a keys file, the command line or Python."""

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tasks.errors import (
    ColumnNotFound,
    DatasetNotFound,
    EmptyKeys,
    UnsupportedFormat,
    UnsupportedKeyType,
)
from tasks.placement import KeyValue

KEYS_FORMATS = (".txt", ".csv", ".parquet", ".pq")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def read_keys_file(path: Path, key: str) -> tuple[list[Any], int]:
    """Return (raw keys, first line number) of a keys file, in file order.

    ``.txt``: one key per line, no header. ``.csv`` and ``.parquet``: one column, or the
    column named like the shard set's key. The line number maps a position to a line.
    """
    if not path.is_file():
        raise DatasetNotFound(f"{path}: no such keys file")
    suffix = path.suffix.lower()
    if suffix not in KEYS_FORMATS:
        raise UnsupportedFormat(f"{path}: unsupported keys file type '{path.suffix}' "
                                f"(use {', '.join(KEYS_FORMATS)})")
    if suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        return _non_empty([line if line.strip() else None for line in lines], path), 1
    if suffix == ".csv":
        if path.stat().st_size == 0:
            raise EmptyKeys(f"{path}: the keys file is empty")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        values = _one_column(list(frame.columns), path, key)
        column = frame[values].astype(object)
        return _non_empty(column.where(column.notna(), None).tolist(), path), 2
    table = pq.read_table(path)
    values = _one_column(table.column_names, path, key)
    return _non_empty(table.column(values).to_pylist(), path), 1


def normalize_keys(values: Iterable[Any], key_type: str, where: str,
                   first_line: int | None = None) -> tuple[list[KeyValue | None], int]:
    """Return (keys of the shard set's type, count of empty keys) for ``values``.

    Empty keys (None, NaN) stay as None: they match no row. Integer sets accept
    integers, integral floats and decimal strings; string sets accept strings only.
    ``where`` and ``first_line`` name the source in error messages.
    """
    keys: list[KeyValue | None] = []
    empty = 0
    exact = str if key_type == "str" else int
    for position, value in enumerate(values):
        if type(value) is exact:
            keys.append(value)
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            keys.append(None)
            empty += 1
        else:
            keys.append(_convert(value, key_type, where, position, first_line))
    if key_type == "int":
        _check_int64_range(keys, where)
    return keys, empty


def _check_int64_range(keys: list[KeyValue | None], where: str) -> None:
    present = [key for key in keys if isinstance(key, int)]
    if present and (min(present) < INT64_MIN or max(present) > INT64_MAX):
        position, value = next((position, key) for position, key in enumerate(keys)
                               if isinstance(key, int) and not INT64_MIN <= key <= INT64_MAX)
        raise UnsupportedKeyType(f"{where}: key {position} ({value}) is outside the 64-bit "
                                 "signed range of integer keys")


def _convert(value: Any, key_type: str, where: str, position: int,
             first_line: int | None) -> KeyValue:
    if key_type == "str":
        if isinstance(value, str):
            return value
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    elif isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    spot = f"line {first_line + position}" if first_line is not None else f"key {position}"
    kind = "an integer" if key_type == "int" else "a string"
    raise UnsupportedKeyType(f"{where}: {spot}: {value!r} is not {kind} key, as the shard "
                             "set's key column is")


def _one_column(columns: list[str], path: Path, key: str) -> str:
    if key in columns:
        return key
    if len(columns) == 1:
        return columns[0]
    raise ColumnNotFound(f"{path}: keys file has columns {', '.join(columns)}; keep one "
                         f"column, or name it '{key}'")


def _non_empty(values: list[Any], path: Path) -> list[Any]:
    if not values:
        raise EmptyKeys(f"{path}: the keys file holds no keys")
    return values
