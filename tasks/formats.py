"""Dataset formats: inspect a file, cut it into chunks, read one chunk by reference.

A chunk is a small JSON dict naming a slice of a file, never the data itself:

- CSV: a byte range ``[start, end)`` aligned to line ends, with its first line number;
- Parquet: a row range inside one row group;
- NPY: a row range of a memory-mapped 2-D array (columns ``c0``, ``c1``, ...) or of a
  structured array (columns are its field names).

Every chunk also carries ``rows``, the number of data rows it holds, so the reduce can
check that all rows were seen.
"""

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tasks.csv_check import FieldCounter, check_header, check_quoted_part
from tasks.errors import (
    ColumnNotFound,
    ColumnNotNumeric,
    DatasetError,
    EmptyDataset,
    MalformedCsv,
    UnsupportedFormat,
)

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}

SCAN_BLOCK_BYTES = 4 * 1024 * 1024

# Rows read up front to tell numeric columns from text ones before anything is queued.
CSV_SAMPLE_ROWS = 1000

Chunk = dict[str, Any]


@dataclass(frozen=True)
class DatasetInfo:
    """What the producer knows about a dataset before planning."""

    path: Path
    format: str
    columns: list[str]
    numeric: dict[str, bool]
    # Exact for Parquet and NPY; for CSV an estimate from the sampled line lengths, since
    # counting means reading the whole file, which planning does once anyway.
    n_rows: int
    size_bytes: int
    # Where a non-numeric column first shows text, e.g. "line 7: 'abc'", when known.
    first_text: dict[str, str] = field(default_factory=dict)


def detect_format(path: Path) -> str:
    """Return ``"csv"``, ``"parquet"`` or ``"npy"`` from the file suffix."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise UnsupportedFormat(
            f"{path}: unsupported file type '{path.suffix}' (use .csv, .parquet or .npy)"
        ) from None


def inspect_dataset(path: Path) -> DatasetInfo:
    """Read a dataset's columns, their numeric-ness and its row count."""
    file_format = detect_format(path)
    size_bytes = path.stat().st_size
    if size_bytes == 0:
        raise EmptyDataset(f"{path}: the file is empty")
    first_text: dict[str, str] = {}
    if file_format == "csv":
        columns, numeric, first_text, n_rows = _csv_columns(path)
    elif file_format == "parquet":
        metadata = pq.ParquetFile(path)
        schema = metadata.schema_arrow
        columns = list(schema.names)
        numeric = {field.name: _arrow_is_numeric(field.type) for field in schema}
        n_rows = metadata.metadata.num_rows
    else:
        array = _open_npy(path)
        columns = _npy_columns(array)
        numeric = {name: _npy_column_is_numeric(array, name) for name in columns}
        n_rows = int(array.shape[0])
    if n_rows == 0:
        raise EmptyDataset(f"{path}: the file has no data rows")
    return DatasetInfo(path, file_format, columns, numeric, n_rows, size_bytes, first_text)


def file_stamp(path: Path) -> list[int]:
    """Return [size in bytes, modification time in ns]: what changes when a file does."""
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


def check_columns(info: DatasetInfo, used: list[str]) -> None:
    """Raise if a used column is missing from the dataset or not numeric."""
    for name in used:
        if name not in info.columns:
            known = ", ".join(info.columns)
            raise ColumnNotFound(f"{info.path}: no column '{name}' (columns: {known})")
        if not info.numeric[name]:
            where = f" ({info.first_text[name]})" if name in info.first_text else ""
            raise ColumnNotNumeric(f"{info.path}: column '{name}' is not numeric{where}")


def plan_chunks(info: DatasetInfo, relative_path: str, chunk_rows: int) -> list[Chunk]:
    """Cut the dataset into chunks of at most ``chunk_rows`` data rows each."""
    if info.format == "csv":
        pieces = _csv_byte_ranges(info.path, chunk_rows, len(info.columns))
        if not pieces:
            raise EmptyDataset(f"{info.path}: the file has no data rows")
    elif info.format == "parquet":
        pieces = _parquet_row_ranges(info.path, chunk_rows)
    else:
        pieces = [
            {"start": start, "rows": min(chunk_rows, info.n_rows - start)}
            for start in range(0, info.n_rows, chunk_rows)
        ]
    return [
        {"index": index, "path": relative_path, "format": info.format, **piece}
        for index, piece in enumerate(pieces)
    ]


def read_chunk(path: Path, chunk: Chunk, columns: list[str],
               all_columns: list[str]) -> np.ndarray:
    """Return the chunk's ``columns`` as a new (n, len(columns)) float64 array in column
    (Fortran) order, which the caller may modify.

    Missing values come back as NaN. A non-numeric cell raises
    :class:`ColumnNotNumeric` naming the file, chunk and line.
    """
    if chunk["format"] == "csv":
        return _read_csv_chunk(path, chunk, columns, all_columns)
    if chunk["format"] == "parquet":
        table = pq.ParquetFile(path).read_row_group(chunk["row_group"], columns=columns)
        table = table.slice(chunk["offset"], chunk["rows"])
        block = np.empty((table.num_rows, len(columns)), order="F")
        for index, name in enumerate(columns):
            block[:, index] = table.column(name).to_numpy(zero_copy_only=False)
        return block
    array = _open_npy(path)
    rows = array[chunk["start"]:chunk["start"] + chunk["rows"]]
    block = np.empty((len(rows), len(columns)), order="F")
    for index, name in enumerate(columns):
        block[:, index] = rows[name] if array.dtype.names else rows[:, all_columns.index(name)]
    return block


def _csv_columns(path: Path) -> tuple[list[str], dict[str, bool], dict[str, str], int]:
    try:
        sample = pd.read_csv(path, nrows=CSV_SAMPLE_ROWS, engine="c")
    except pd.errors.ParserError as error:
        raise DatasetError(f"{path}: not a regular CSV table: {str(error).strip()}"
                           ) from error
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 text (it holds byte "
                           f"{error.object[error.start]:#04x}): save it as UTF-8") from error
    sample.columns = [str(name) for name in sample.columns]
    columns = list(sample.columns)
    numeric = {
        name: bool(pd.api.types.is_numeric_dtype(sample[name])) for name in columns
    }
    first_text = {}
    for name in columns:
        if numeric[name]:
            continue
        text = sample[name].notna() & pd.to_numeric(sample[name], errors="coerce").isna()
        if text.any():
            position = int(np.flatnonzero(text.to_numpy())[0])
            first_text[name] = f"line {position + 2}: {sample[name].iloc[position]!r}"
    return columns, numeric, first_text, _estimate_csv_rows(path, len(sample))


def _estimate_csv_rows(path: Path, sampled_rows: int) -> int:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header_bytes = len(handle.readline())
        sample_bytes = sum(len(handle.readline()) for _ in range(sampled_rows))
    if sampled_rows < CSV_SAMPLE_ROWS:
        return sampled_rows
    return max(sampled_rows, round((size - header_bytes) * sampled_rows / sample_bytes))


def _csv_byte_ranges(path: Path, chunk_rows: int, n_fields: int) -> list[Chunk]:
    """Split after the header into byte ranges of ``chunk_rows`` lines each.

    Every line is checked on the way (see :mod:`tasks.csv_check`).
    """
    fields = FieldCounter(path, n_fields)
    with open(path, "rb") as handle:
        header = handle.readline()
        check_header(path, header)
        data_start = len(header)
        size = path.stat().st_size
        boundaries = [data_start]
        lines_seen = 0
        offset = data_start
        next_cut = chunk_rows
        ends_with_newline = True
        first_quote: tuple[int, int] | None = None  # (offset of its line, line number)
        open_line_offset = data_start  # where the line in progress began
        while offset < size:
            block = handle.read(SCAN_BLOCK_BYTES)
            if first_quote is None:
                quote = block.find(b'"')
                checked = block if quote < 0 else block[:block.rfind(b"\n", 0, quote) + 1]
                fields.feed(checked, lines_seen)
                if quote >= 0:
                    # The quote's line may have begun in an earlier block.
                    lines_before = lines_seen + checked.count(b"\n")
                    line_offset = (offset + len(checked) if checked.endswith(b"\n")
                                   else open_line_offset)
                    first_quote = (line_offset, lines_before + 2)
            # Counting newlines runs at memory speed; their positions are only needed
            # in the few blocks where a chunk ends.
            count = block.count(b"\n")
            if lines_seen + count >= next_cut:
                line_ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
                cuts = line_ends[next_cut - lines_seen - 1::chunk_rows] + offset + 1
                boundaries.extend(cuts.tolist())
                next_cut += chunk_rows * len(cuts)
            if count:
                open_line_offset = offset + block.rfind(b"\n") + 1
            lines_seen += count
            offset += len(block)
            ends_with_newline = block.endswith(b"\n")
    if offset > data_start and not ends_with_newline:
        lines_seen += 1  # a last line without its newline is still a row
    if first_quote is None:
        fields.finish(last_line=lines_seen + 1)
    else:
        check_quoted_part(path, *first_quote, n_fields)
    if boundaries[-1] < size:
        boundaries.append(size)
    pieces = []
    first_line = 2
    for start, end in zip(boundaries[:-1], boundaries[1:]):
        rows = min(chunk_rows, lines_seen - (first_line - 2))
        pieces.append({"start": start, "end": end, "first_line": first_line, "rows": rows})
        first_line += rows
    return pieces


def _read_csv_chunk(path: Path, chunk: Chunk, columns: list[str],
                    all_columns: list[str]) -> np.ndarray:
    with open(path, "rb") as handle:
        handle.seek(chunk["start"])
        data = handle.read(chunk["end"] - chunk["start"])
    try:
        frame = _parse_csv_block(data, columns, all_columns)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        # The planner refuses what it can foresee; pandas numbers a chunk's rows from 0.
        raise MalformedCsv(f"{path}: chunk {chunk['index']}, lines "
                           f"{chunk['first_line']}-{chunk['first_line'] + chunk['rows'] - 1}: "
                           f"{str(error).strip()}") from error
    for name in columns:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = _coerce_numeric(path, chunk, frame[name], name)
    return np.asfortranarray(frame[columns].to_numpy(dtype=np.float64))


def _parse_csv_block(data: bytes, columns: list[str], all_columns: list[str]) -> pd.DataFrame:
    # Blank lines become all-missing rows, so every planned line is accounted for.
    options: dict[str, Any] = {"header": None, "names": all_columns, "engine": "c",
                               "skip_blank_lines": False}
    try:
        return pd.read_csv(io.BytesIO(data), usecols=columns, **options)
    except pd.errors.ParserError as error:
        if "Too many columns specified" not in str(error):
            raise
    # pandas refuses usecols when no line of the block has every field of the header
    # (a lone blank line, a header ending in a comma, a last column left empty); reading
    # every column, missing fields become missing values, as they do in other blocks.
    return pd.read_csv(io.BytesIO(data), **options)[columns]


def _coerce_numeric(path: Path, chunk: Chunk, values: pd.Series, name: str) -> pd.Series:
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna() & values.notna()
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        line = chunk["first_line"] + position
        raise ColumnNotNumeric(
            f"{path}: chunk {chunk['index']}, line {line}: column '{name}' holds "
            f"non-numeric value {values.iloc[position]!r}"
        )
    return converted


def _parquet_row_ranges(path: Path, chunk_rows: int) -> list[Chunk]:
    metadata = pq.ParquetFile(path).metadata
    pieces = []
    for group in range(metadata.num_row_groups):
        group_rows = metadata.row_group(group).num_rows
        for offset in range(0, group_rows, chunk_rows):
            rows = min(chunk_rows, group_rows - offset)
            pieces.append({"row_group": group, "offset": offset, "rows": rows})
    return pieces


def _arrow_is_numeric(arrow_type: Any) -> bool:
    import pyarrow.types as types

    return bool(types.is_integer(arrow_type) or types.is_floating(arrow_type))


def _open_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise UnsupportedFormat(f"{path}: cannot memory-map this NPY file ({error}); "
                                "save a numeric array") from error
    if array.ndim != 2 and not array.dtype.names:
        raise UnsupportedFormat(
            f"{path}: an NPY dataset must be a 2-D array or a structured array, "
            f"got shape {array.shape}"
        )
    return array


def _npy_columns(array: np.ndarray) -> list[str]:
    if array.dtype.names:
        return list(array.dtype.names)
    return [f"c{index}" for index in range(array.shape[1])]


def _npy_column_is_numeric(array: np.ndarray, name: str) -> bool:
    dtype = array.dtype[name] if array.dtype.names else array.dtype
    return bool(np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating))


def read_sample(path: Path, columns: list[str], rows: int) -> np.ndarray:
    """Return up to ``rows`` leading rows of ``columns`` without missing values, float64."""
    file_format = detect_format(path)
    if file_format == "csv":
        frame = pd.read_csv(path, usecols=columns, nrows=rows, engine="c")
        values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    else:
        info_columns = inspect_dataset(path).columns
        first = plan_chunks(inspect_dataset(path), path.name, rows)[0]
        values = read_chunk(path, first, columns, info_columns)
    return values[~np.isnan(values).any(axis=1)]
