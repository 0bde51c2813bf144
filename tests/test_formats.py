"""Chunk planning cuts files at line ends and never loses or repeats a row."""

from pathlib import Path

import numpy as np
import pytest

import tasks.formats
from tasks.errors import DatasetError, MalformedCsv
from tasks.formats import Chunk, inspect_dataset, plan_chunks, read_chunk


def read_planned(path: Path, text: str, columns: list[str],
                 chunk_rows: int) -> tuple[list[Chunk], np.ndarray]:
    """Write ``text`` to ``path``, plan it in chunks and read ``columns`` of every chunk."""
    path.write_text(text)
    info = inspect_dataset(path)
    chunks = plan_chunks(info, path.name, chunk_rows)
    values = np.vstack([read_chunk(path, chunk, columns, info.columns) for chunk in chunks])
    return chunks, values


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_csv_chunks_cover_every_row_once(tmp_path: Path, chunk_rows: int,
                                         trailing_newline: bool) -> None:
    text = "a,b\n" + "\n".join(f"{row},{row * 10}" for row in range(23))

    chunks, values = read_planned(tmp_path / "rows.csv",
                                  text + ("\n" if trailing_newline else ""), ["a", "b"],
                                  chunk_rows)

    assert inspect_dataset(tmp_path / "rows.csv").n_rows == 23
    assert [chunk["rows"] for chunk in chunks] == [
        min(chunk_rows, 23 - start) for start in range(0, 23, chunk_rows)]
    np.testing.assert_array_equal(values[:, 0], np.arange(23))
    assert [chunk["first_line"] for chunk in chunks] == list(range(2, 25, chunk_rows))


def test_csv_blank_line_counts_as_a_missing_row(tmp_path: Path) -> None:
    _, values = read_planned(tmp_path / "blank.csv", "a,b\n1,2\n\n3,4\n", ["a", "b"], 2)

    assert values.shape == (3, 2) and np.isnan(values[1]).all()


def test_csv_quoted_fields_without_line_breaks_are_read(tmp_path: Path) -> None:
    # A quote inside an unquoted field (an inch mark) is a plain character.
    text = 'a,label,b\n1,"x, ""y""",2\n3,5\'11",4\n5,"",6\n7,plain,8\n'

    _, values = read_planned(tmp_path / "quoted.csv", text, ["a", "b"], 1)

    np.testing.assert_array_equal(values, [[1, 2], [3, 4], [5, 6], [7, 8]])


def assert_planning_refuses(path: Path, text: str, pattern: str,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning ``text`` raises MalformedCsv matching ``pattern``, whatever the blocks."""
    path.write_text(text)
    # The faults lie past the rows inspection samples, as in a large file.
    monkeypatch.setattr(tasks.formats, "CSV_SAMPLE_ROWS", 1)
    info = inspect_dataset(path)
    # Blocks of 3 bytes end inside lines and quotes: what is open carries over.
    for block_bytes in (tasks.formats.SCAN_BLOCK_BYTES, 3):
        monkeypatch.setattr(tasks.formats, "SCAN_BLOCK_BYTES", block_bytes)
        with pytest.raises(MalformedCsv, match=pattern):
            plan_chunks(info, path.name, 2)


@pytest.mark.parametrize("text", [
    'a,label,b\n1,one,2\n3,"two\nlines",4\n',
    'a,label,b\n1,one,2\n3,"open,4\n5,six,6\n',
    'a,label,b\n1,one,2\n3,"open at the end,4\n',
])
def test_csv_line_break_inside_quotes_is_refused_with_its_line(
        tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_planning_refuses(tmp_path / "quoted.csv", text,
                            "quoted.csv line 3: a quoted field", monkeypatch)


@pytest.mark.parametrize("text, line, fields", [
    ("a,b\n1,2,3\n2,4\n3,6\n", 2, 3),
    ("a,b\n1,2\n2,4\n3,6,7,8\n", 4, 4),
    ("a,b\n1,2\n2,4\n3,6,7", 4, 3),
    ('a,b\n1,2\n"x,y",4\n3,6,7\n', 4, 3),
    ('a,b\n1,2\n2,"x,y",9\n', 3, 3),
])
def test_csv_line_with_more_fields_than_the_header_is_refused_with_its_line(
        tmp_path: Path, text: str, line: int, fields: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert_planning_refuses(tmp_path / "wide.csv", text,
                            f"wide.csv line {line}: {fields} fields where the header names 2",
                            monkeypatch)


@pytest.mark.parametrize("text", [
    "y,A,B\n1,2,3\n2,4,5\n\n",          # the last chunk is one blank line
    "y,A,B,\n1,2,3\n2,4,5\n3,6,8\n",     # a header ending in a comma
    "y,A,B,note\n1,2,3,x\n2,4,5\n3,6,8\n",  # a last column filled once
])
def test_csv_chunks_whose_lines_all_lack_trailing_fields_are_read(tmp_path: Path,
                                                                 text: str) -> None:
    _, values = read_planned(tmp_path / "short.csv", text, ["y", "A", "B"], 2)

    complete = values[~np.isnan(values).any(axis=1)]
    np.testing.assert_array_equal(complete[:2], [[1, 2, 3], [2, 4, 5]])


def test_csv_quoted_field_longer_than_the_csv_module_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text('y,A,note\n1,2,"' + "x" * 200_000 + '"\n3,4,n\n')
    info = inspect_dataset(path)

    chunks = plan_chunks(info, "long.csv", 1)

    assert [chunk["rows"] for chunk in chunks] == [1, 1]


@pytest.mark.parametrize("content, pattern", [
    (b'"weight\n(kg)",A,B\n1,2,3\n', "line 1: a quoted column name goes on"),
    (b"y,A,B\r1,2,3\r2,3,5\r", "carriage return alone"),
])
def test_csv_header_the_planner_would_misread_is_refused(tmp_path: Path, content: bytes,
                                                         pattern: str) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(content)

    with pytest.raises(MalformedCsv, match=pattern):
        plan_chunks(inspect_dataset(path), "odd.csv", 2)


def test_csv_that_is_not_utf8_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"y,A,city\n1,2,M\xfcnchen\n")

    with pytest.raises(DatasetError, match="not UTF-8 text .*0xfc"):
        inspect_dataset(path)


def test_structured_npy_columns_are_its_field_names(tmp_path: Path) -> None:
    array = np.zeros(5, dtype=[("x", "f8"), ("y", "i4")])
    array["x"], array["y"] = np.arange(5), np.arange(5) * 2
    path = tmp_path / "fields.npy"
    np.save(path, array)
    info = inspect_dataset(path)

    chunks = plan_chunks(info, "fields.npy", 2)
    values = np.vstack([read_chunk(path, chunk, ["y", "x"], info.columns) for chunk in chunks])

    assert info.columns == ["x", "y"]
    np.testing.assert_array_equal(values, np.column_stack([np.arange(5) * 2, np.arange(5)]))
