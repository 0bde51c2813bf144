"""Shard sets: a dataset partitioned by a stable hash of its key into Parquet shards.

A shard set named ``NAME`` lives under ``<data root>/lepton-shards/NAME/``:

- ``manifest.json``: the key column and its type, the shard count, row counts, and the
  build directory in use;
- ``<build id>/shard-00000.parquet`` ...: one file per shard (empty shards included),
  holding the dataset's rows whose key hashes to the shard, in their original order,
  plus the column ``_lepton_row`` (the row's 0-based position in the dataset);
- ``<build id>/nulls.parquet``: rows whose key is empty, when the user set them aside.

A rebuild writes a new build directory and then replaces the manifest atomically, so a
reader sees either the old shard set or the new one.
"""

import json
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tasks.errors import (
    ColumnNotFound,
    EmptyDataset,
    JobIncomplete,
    NullKeys,
    ShardSetNotFound,
    UnsupportedFormat,
    UnsupportedKeyType,
)
from tasks.placement import shards_of, shards_of_int64
from tasks.result_files import write_json

SHARDS_DIR = "lepton-shards"
MANIFEST = "manifest.json"
ROW_COLUMN = "_lepton_row"
NULL_POLICIES = ("refuse", "set-aside")
HASH_SCHEME = ("integers: splitmix64(int64 bits ^ 0x9E3779B97F4A7C15); strings: "
               "blake2b-64 of b's' + UTF-8; modulo the shard count")

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Manifest:
    """What a shard set holds; stored as ``manifest.json``."""

    name: str
    build_id: str
    source: str
    key: str
    key_type: str
    shard_count: int
    rows: int
    null_rows: int
    shard_rows: list[int]
    columns: list[str]
    hash_scheme: str
    built_at: float

    @property
    def build_dir(self) -> str:
        """The build directory, relative to the data root."""
        return f"{SHARDS_DIR}/{self.name}/{self.build_id}"

    def shard_path(self, shard: int) -> str:
        """The Parquet file of ``shard``, relative to the data root."""
        return f"{self.build_dir}/shard-{shard:05d}.parquet"

    def to_json(self) -> dict[str, Any]:
        """Return the manifest as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Manifest":
        """Rebuild a manifest from :meth:`to_json` output."""
        return cls(**data)


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid shard set name, else raise ShardSetNotFound."""
    if not _NAME_PATTERN.fullmatch(name):
        raise ShardSetNotFound(f"invalid shard set name {name!r}: use letters, digits, "
                               "'_', '.' and '-' (at most 128, not starting with '.')")
    return name


def shard_set_dir(data_root: Path, name: str) -> Path:
    """Return the directory of shard set ``name`` under the data root."""
    return data_root / SHARDS_DIR / check_name(name)


def read_manifest(data_root: Path, name: str) -> Manifest:
    """Return the manifest of shard set ``name``, or raise ShardSetNotFound."""
    path = shard_set_dir(data_root, name) / MANIFEST
    if not path.is_file():
        known = list_shard_sets(data_root)
        hint = f" (known: {', '.join(known)})" if known else " (none built yet)"
        raise ShardSetNotFound(f"no shard set named '{name}' under {data_root}{hint}; "
                               "build one with `lepton shard build`")
    return Manifest.from_json(json.loads(path.read_text()))


def list_shard_sets(data_root: Path) -> list[str]:
    """Return the names of the shard sets built under the data root, sorted."""
    base = data_root / SHARDS_DIR
    if not base.is_dir():
        return []
    return sorted(entry.name for entry in base.iterdir() if (entry / MANIFEST).is_file())


def read_table(path: Path) -> pa.Table:
    """Read a CSV (with a header line) or Parquet dataset as an Arrow table."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise EmptyDataset(f"{path}: the file is empty")
    if suffix == ".csv":
        return pa_csv.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    raise UnsupportedFormat(f"{path}: unsupported file type '{path.suffix}' for a shard set "
                            "(use .csv or .parquet)")


def key_type_of(arrow_type: pa.DataType, path: Path, key: str) -> str:
    """Return ``"int"`` or ``"str"`` for a key column's Arrow type, else raise."""
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "str"
    raise UnsupportedKeyType(f"{path}: key column '{key}' has type {arrow_type}; shard keys "
                             "must be integers or strings")


def build_shard_set(path: Path, source: str, key: str, shard_count: int, name: str,
                    data_root: Path, nulls: str = "refuse",
                    on_shard: Callable[[int], None] | None = None) -> Manifest:
    """Partition the dataset at ``path`` into ``shard_count`` shards and return the manifest.

    ``source`` is the dataset's path relative to the data root (recorded only). ``nulls``
    is ``"refuse"`` (empty keys raise :class:`NullKeys`) or ``"set-aside"`` (their rows go
    to ``nulls.parquet``). ``on_shard`` is called after each shard file is written.
    """
    check_name(name)
    if shard_count < 1:
        raise ValueError(f"the shard count must be at least 1, got {shard_count}")
    if nulls not in NULL_POLICIES:
        raise ValueError(f"nulls must be one of {NULL_POLICIES}, got {nulls!r}")
    table = read_table(path)
    if key not in table.column_names:
        raise ColumnNotFound(f"{path}: no key column '{key}' "
                             f"(columns: {', '.join(table.column_names)})")
    if table.num_rows == 0:
        raise EmptyDataset(f"{path}: the file has no data rows")
    key_type = key_type_of(table.schema.field(key).type, path, key)

    table = table.replace_schema_metadata(None)
    if key_type == "int":
        table = _with_int64_key(table, key, path)
    table = table.append_column(ROW_COLUMN, pa.array(np.arange(table.num_rows)))
    present = pc.is_valid(table.column(key))
    aside = table.filter(pc.invert(present))
    if aside.num_rows and nulls == "refuse":
        first = int(aside.column(ROW_COLUMN)[0].as_py())
        raise NullKeys(f"{path}: key column '{key}' is empty in {aside.num_rows} rows (first "
                       f"at data row {first + 1}); set them aside with --nulls set-aside")
    kept = table.filter(present)
    shard_of_row = _shard_of_rows(kept.column(key), shard_count)
    order = np.argsort(shard_of_row, kind="stable")
    by_shard = kept.take(pa.array(order))
    bounds = np.searchsorted(shard_of_row[order], np.arange(shard_count + 1))

    manifest = Manifest(
        name=name, build_id=f"build-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}",
        source=source, key=key, key_type=key_type, shard_count=shard_count,
        rows=table.num_rows, null_rows=aside.num_rows,
        shard_rows=np.diff(bounds).tolist(), columns=[c for c in table.column_names
                                                      if c != ROW_COLUMN],
        hash_scheme=HASH_SCHEME, built_at=time.time())
    if sum(manifest.shard_rows) + manifest.null_rows != manifest.rows:
        raise JobIncomplete(f"{path}: shards hold {sum(manifest.shard_rows)} rows and "
                            f"{manifest.null_rows} were set aside, but the file has "
                            f"{manifest.rows}")
    _write_build(data_root, manifest, by_shard, bounds, aside, on_shard)
    return manifest


def _with_int64_key(table: pa.Table, key: str, path: Path) -> pa.Table:
    """Return ``table`` with its integer key column as int64, the type keys travel as."""
    try:
        column = table.column(key).cast(pa.int64())
    except pa.ArrowInvalid:
        raise UnsupportedKeyType(f"{path}: key column '{key}' holds integers beyond the "
                                 "64-bit signed range") from None
    return table.set_column(table.column_names.index(key), key, column)


def _shard_of_rows(keys: pa.ChunkedArray, shard_count: int) -> np.ndarray:
    """Return the shard of every row, int64 (rows,); string keys hashed once each."""
    if pa.types.is_integer(keys.type):
        return shards_of_int64(keys.to_numpy(), shard_count)
    encoded = keys.combine_chunks().dictionary_encode()
    shard_of_distinct = shards_of(encoded.dictionary.to_pylist(), shard_count)
    return shard_of_distinct[encoded.indices.to_numpy(zero_copy_only=False)]


def _write_build(data_root: Path, manifest: Manifest, by_shard: pa.Table, bounds: np.ndarray,
                 aside: pa.Table, on_shard: Callable[[int], None] | None) -> None:
    """Write the shard files, then switch the manifest to them and drop older builds."""
    build_dir = data_root / manifest.build_dir
    build_dir.mkdir(parents=True)
    for shard in range(manifest.shard_count):
        start, stop = int(bounds[shard]), int(bounds[shard + 1])
        pq.write_table(by_shard.slice(start, stop - start), data_root / manifest.shard_path(shard))
        if on_shard is not None:
            on_shard(shard)
    if aside.num_rows:
        pq.write_table(aside, build_dir / "nulls.parquet")

    set_dir = build_dir.parent
    write_json(set_dir / MANIFEST, manifest.to_json(), indent=1)
    for entry in set_dir.iterdir():
        if entry.is_dir() and entry.name != manifest.build_id:
            shutil.rmtree(entry, ignore_errors=True)
