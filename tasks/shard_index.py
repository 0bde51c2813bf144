"""Answer key look-ups from one shard held in memory, and merge the owners' answers.

Asks and answers are Arrow tables, so types, nulls and timestamps survive unchanged:

- an ask has the columns ``shard`` (int32), ``key`` (int64 or string) and
  ``_lepton_position`` (int64, the key's 0-based position in the caller's list), sorted
  by shard;
- an answer has ``_lepton_position``, ``_lepton_found`` (bool), then the shard set's
  columns: one row per matching row, and one row with only the key set per missing key.

The merge concatenates the answers and sorts them by position, which puts the rows back
in the caller's key order.
"""

import base64
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.errors import JobIncomplete
from tasks.placement import KeyValue
from tasks.sharding import ROW_COLUMN

POSITION_COLUMN = "_lepton_position"
FOUND_COLUMN = "_lepton_found"
SHARD_COLUMN = "shard"
KEY_COLUMN = "key"


def key_arrow_type(key_type: str) -> pa.DataType:
    """Return the Arrow type keys of a shard set's ``key_type`` travel as."""
    return pa.int64() if key_type == "int" else pa.string()


class ShardIndex:
    """One shard's rows and a hash index from key to row number.

    Keys that are unique in the shard (the usual case for a look-up table) are found by
    a vectorised hash table; a shard with repeated keys uses a dict of row lists.
    """

    def __init__(self, table: pa.Table, key: str) -> None:
        key_type = "int" if pa.types.is_integer(table.schema.field(key).type) else "str"
        # Keys take the type they travel as, as a left join takes the key from its left.
        position = table.column_names.index(key)
        table = table.set_column(position, key,
                                 table.column(key).cast(key_arrow_type(key_type)))
        self.table = table
        self.key = key
        self.index = pd.Index(table.column(key).to_numpy(), copy=False)
        self.rows: dict[KeyValue, list[int]] | None = None
        if not self.index.is_unique:
            self.rows = {}
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

    def lookup(self, keys: pa.Array, positions: np.ndarray) -> pa.Table:
        """Return the answer (see the module docstring) for ``keys`` at ``positions``.

        ``keys`` is an Arrow array of the shard set's key type, ``positions`` an int64
        array of the same length. A key held by several rows gives all of them, in
        dataset order.
        """
        rows, taken = self.find(keys)
        missing = np.setdiff1d(np.arange(len(keys)), taken, assume_unique=True)
        return build_answer(self.table.take(pa.array(rows, type=pa.int64())), positions[taken],
                            self.key, keys.take(pa.array(missing)), positions[missing])

    def find(self, keys: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Return (row numbers, index in ``keys``) of every match, both int64 arrays."""
        if self.rows is not None:
            return self._repeated_rows(keys.to_pylist())
        found_at = self.index.get_indexer(keys.to_numpy(zero_copy_only=False))
        hit = np.flatnonzero(found_at >= 0)
        return found_at[hit], hit

    def _repeated_rows(self, keys: list[KeyValue]) -> tuple[np.ndarray, np.ndarray]:
        assert self.rows is not None
        rows: list[int] = []
        taken: list[int] = []
        for index, key in enumerate(keys):
            held = self.rows.get(key)
            if held is not None:
                rows.extend(held)
                taken.extend([index] * len(held))
        return np.asarray(rows, dtype=np.int64), np.asarray(taken, dtype=np.int64)


def absent_rows(schema: pa.Schema, key: str, keys: pa.Array, positions: np.ndarray
                ) -> pa.Table:
    """Return answer rows for keys that matched nothing: key and position set, rest null."""
    columns = []
    for field in schema:
        if field.name == POSITION_COLUMN:
            columns.append(pa.array(positions, type=pa.int64()))
        elif field.name == FOUND_COLUMN:
            columns.append(pa.array(np.zeros(len(positions), dtype=bool)))
        elif field.name == key:
            columns.append(keys.cast(field.type))
        else:
            columns.append(pa.nulls(len(positions), type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def table_to_bytes(table: pa.Table) -> bytes:
    """Return ``table`` as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def table_from_bytes(data: bytes) -> pa.Table:
    """Return the table written by :func:`table_to_bytes`."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def table_to_text(table: pa.Table) -> str:
    """Return ``table`` as base64 text, to travel inside a JSON message."""
    return base64.b64encode(table_to_bytes(table)).decode("ascii")


def table_from_text(text: str) -> pa.Table:
    """Return the table written by :func:`table_to_text`."""
    return table_from_bytes(base64.b64decode(text))


def answer_ask(ask: pa.Table, index_of: Callable[[int], ShardIndex]) -> pa.Table:
    """Answer an ask with the index of each of its shards; return one answer table."""
    if ask.num_rows == 0:
        raise ValueError("an ask holds at least one key")
    shards = ask.column(SHARD_COLUMN).to_numpy()
    starts = np.flatnonzero(np.r_[True, shards[1:] != shards[:-1]][:len(shards)])
    stops = np.r_[starts[1:], len(shards)][:len(starts)]
    keys = ask.column(KEY_COLUMN).combine_chunks()
    positions = ask.column(POSITION_COLUMN).to_numpy()

    found_rows, found_at = [], []
    answered = np.zeros(len(keys), dtype=bool)
    for start, stop in zip(starts.tolist(), stops.tolist()):
        index = index_of(int(shards[start]))
        rows, taken = index.find(keys.slice(start, stop - start))
        found_rows.append(index.table.take(pa.array(rows, type=pa.int64())))
        found_at.append(taken + start)
        answered[taken + start] = True
    taken = np.concatenate(found_at)
    missing = np.flatnonzero(~answered)
    return build_answer(pa.concat_tables(found_rows), positions[taken], index.key,
                        keys.take(pa.array(missing)), positions[missing])


def build_answer(found: pa.Table, found_positions: np.ndarray, key: str,
                 missing_keys: pa.Array, missing_positions: np.ndarray) -> pa.Table:
    """Return an answer: the found rows and one row per missing key, with positions."""
    found = found.add_column(0, FOUND_COLUMN, pa.array(np.ones(len(found), dtype=bool)))
    found = found.add_column(0, POSITION_COLUMN, pa.array(found_positions, type=pa.int64()))
    return pa.concat_tables([found, absent_rows(found.schema, key, missing_keys,
                                                missing_positions)])


def merge_answers(answers: Sequence[pa.Table], key: str, key_type: str, n_keys: int,
                  empty_positions: Sequence[int] = ()) -> tuple[pa.Table, list[KeyValue | None]]:
    """Return (rows in key order, missing keys in key order) from the owners' answers.

    The rows table equals a left join of the key list with the dataset: one row per
    match, in the order of the keys (a key held by several rows gives them in dataset
    order), and one row with empty values for each missing key. ``empty_positions`` are
    the positions of empty keys, never sent to an owner: they match nothing. Raises
    :class:`JobIncomplete` unless every key position was answered exactly once.
    """
    _check_every_position(answers, empty_positions, n_keys)
    merged = pa.concat_tables(answers)
    if len(empty_positions):
        nulls = pa.nulls(len(empty_positions), type=key_arrow_type(key_type))
        merged = pa.concat_tables([merged, absent_rows(
            merged.schema, key, nulls, np.asarray(empty_positions, dtype=np.int64))])
    positions = merged.column(POSITION_COLUMN).to_numpy()

    # A stable sort keeps the rows of one key in dataset order, as each owner sent them.
    order = pa.array(np.argsort(positions, kind="stable"))
    missing = pc.filter(merged.column(key).take(order),
                        pc.invert(merged.column(FOUND_COLUMN).take(order)))
    rows = merged.take(order).drop_columns([POSITION_COLUMN, FOUND_COLUMN])
    return rows, missing.to_pylist()


def _check_every_position(answers: Sequence[pa.Table], empty_positions: Sequence[int],
                          n_keys: int) -> None:
    """Each key position must be answered by exactly one owner (or be an empty key)."""
    answered = [np.unique(answer.column(POSITION_COLUMN).to_numpy()) for answer in answers]
    answered.append(np.asarray(empty_positions, dtype=np.int64))
    positions = np.concatenate(answered)
    if len(positions) and (positions.min() < 0 or positions.max() >= n_keys):
        raise JobIncomplete(f"look-up answers name positions outside the {n_keys} keys")
    counts = np.bincount(positions, minlength=n_keys)
    bad = np.flatnonzero(counts != 1)
    if len(bad):
        raise JobIncomplete(f"look-up answers cover the {n_keys} keys badly: positions "
                            f"{bad[:10].tolist()} are unanswered or answered twice")
