"""Answer key look-ups from one shard held in memory, and merge the owners' answers.

An answer travels in a JSON message: the matching rows as a base64 Arrow IPC stream (so
types, nulls and timestamps survive unchanged, at a fraction of the cost of JSON rows),
plus the positions and values of the keys that matched nothing. Every row carries
``_lepton_position``, the 0-based position of its key in the caller's key list, so the
merge can put the rows back in key order.
"""

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.errors import JobIncomplete
from tasks.placement import KeyValue
from tasks.sharding import ROW_COLUMN

POSITION_COLUMN = "_lepton_position"

Answer = dict[str, Any]


class ShardIndex:
    """One shard's rows and a dict from key to the row numbers holding it."""

    def __init__(self, table: pa.Table, key: str) -> None:
        self.table = table
        self.key = key
        self.rows: dict[KeyValue, list[int]] = {}
        for row, value in enumerate(table.column(key).to_pylist()):
            self.rows.setdefault(value, []).append(row)

    @classmethod
    def load(cls, path: Path, key: str) -> "ShardIndex":
        """Read a shard file written by :func:`tasks.sharding.build_shard_set`.

        The row-number column stays on disk: rows are kept in dataset order, which is
        all the merge needs.
        """
        table = pq.read_table(path).replace_schema_metadata(None)
        if ROW_COLUMN in table.column_names:
            table = table.drop_columns([ROW_COLUMN])
        return cls(table, key)

    @property
    def nbytes(self) -> int:
        """Bytes held by the shard's Arrow columns (the dict comes on top)."""
        return int(self.table.nbytes)

    def lookup(self, keys: Sequence[KeyValue], positions: Sequence[int]
               ) -> tuple[pa.Table, list[int], list[KeyValue]]:
        """Return (matching rows, missing positions, missing keys) for ``keys``.

        The rows table has ``_lepton_position`` first, then the shard's columns; a key
        held by several rows gives all of them, in dataset order.
        """
        take: list[int] = []
        taken_positions: list[int] = []
        missing_positions: list[int] = []
        missing_keys: list[KeyValue] = []
        for key, position in zip(keys, positions):
            rows = self.rows.get(key)
            if rows is None:
                missing_positions.append(position)
                missing_keys.append(key)
            elif len(rows) == 1:
                take.append(rows[0])
                taken_positions.append(position)
            else:
                take.extend(rows)
                taken_positions.extend([position] * len(rows))
        found = self.table.take(pa.array(take, type=pa.int64()))
        found = found.add_column(0, POSITION_COLUMN, pa.array(taken_positions, type=pa.int64()))
        return found, missing_positions, missing_keys


def encode_table(table: pa.Table) -> str:
    """Return ``table`` as a base64 Arrow IPC stream (a JSON-safe string)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode("ascii")


def decode_table(text: str) -> pa.Table:
    """Return the table encoded by :func:`encode_table`."""
    return pa.ipc.open_stream(pa.py_buffer(base64.b64decode(text))).read_all()


def make_answer(parts: Sequence[tuple[pa.Table, list[int], list[KeyValue]]]) -> Answer:
    """Combine the look-ups of several shards of one owner into one JSON-ready answer."""
    tables = [table for table, _, _ in parts]
    return {
        "table": encode_table(pa.concat_tables(tables) if len(tables) > 1 else tables[0]),
        "missing_positions": [position for _, positions, _ in parts for position in positions],
        "missing_keys": [key for _, _, keys in parts for key in keys],
    }


def merge_answers(answers: Sequence[Answer], key: str, n_keys: int,
                  empty_positions: Sequence[int] = ()) -> tuple[pa.Table, list[KeyValue | None]]:
    """Return (rows in key order, missing keys in key order) from the owners' answers.

    The rows table equals a left join of the key list with the dataset: one row per
    match, in the order of the keys (a key held by several rows gives them in dataset
    order), and one row with empty values for each missing key. ``empty_positions`` are
    the positions of empty keys, never sent to an owner: they match nothing. Raises
    :class:`JobIncomplete` unless every key position was answered exactly once.
    """
    found = pa.concat_tables([decode_table(answer["table"]) for answer in answers])
    missing_positions = np.array([position for answer in answers
                                  for position in answer["missing_positions"]]
                                 + list(empty_positions), dtype=np.int64)
    missing_keys: list[KeyValue | None] = [
        value for answer in answers for value in answer["missing_keys"]]
    missing_keys += [None] * len(empty_positions)
    _check_every_position(found, missing_positions, n_keys)

    columns = []
    for field in found.schema:
        if field.name == POSITION_COLUMN:
            columns.append(pa.array(missing_positions, type=pa.int64()))
        elif field.name == key:
            columns.append(pa.array(missing_keys, type=field.type))
        else:
            columns.append(pa.nulls(len(missing_keys), type=field.type))
    absent = pa.Table.from_arrays(columns, schema=found.schema)

    merged = pa.concat_tables([found, absent])
    # A stable sort keeps the rows of one key in dataset order, as each owner sent them.
    order = np.argsort(merged.column(POSITION_COLUMN).to_numpy(), kind="stable")
    merged = merged.take(pa.array(order)).drop_columns([POSITION_COLUMN])
    missing_order = np.argsort(missing_positions, kind="stable")
    return merged, [missing_keys[index] for index in missing_order.tolist()]


def _check_every_position(found: pa.Table, missing_positions: np.ndarray, n_keys: int) -> None:
    found_positions = np.unique(found.column(POSITION_COLUMN).to_numpy())
    answered = np.concatenate([found_positions, missing_positions])
    counts = np.bincount(answered, minlength=n_keys) if len(answered) else np.zeros(n_keys)
    if len(counts) != n_keys or not np.all(counts == 1):
        unanswered = np.flatnonzero(counts[:n_keys] == 0)[:10].tolist()
        twice = np.flatnonzero(counts > 1)[:10].tolist()
        raise JobIncomplete(f"look-up answers cover the {n_keys} keys badly: positions "
                            f"unanswered {unanswered}, answered twice {twice}")
