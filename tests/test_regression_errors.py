"""Bad input gives a clear error naming what and where, before enqueueing when it can."""

from pathlib import Path

import numpy as np
import pytest

from producer.client import Client
from tasks import errors


def submit_and_wait(client: Client, path: Path, target: str = "y",
                    features: list[str] | None = None, chunk_rows: int | None = None) -> dict:
    job_id = client.submit_regression(path, target, features, True, chunk_rows)
    return client.wait(job_id, progress=False, timeout_s=60)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_missing_file_is_refused_before_anything_is_queued(client: Client,
                                                           data_root: Path) -> None:
    with pytest.raises(errors.DatasetNotFound, match="no-such.csv"):
        client.submit_regression(data_root / "no-such.csv", "y")


def test_unknown_column_is_named_with_the_columns_that_exist(client: Client,
                                                             data_root: Path) -> None:
    path = write(data_root / "columns.csv", "x,y\n1,2\n2,3\n3,5\n")

    with pytest.raises(errors.ColumnNotFound, match=r"'z'.*columns: x, y"):
        client.submit_regression(path, "y", ["z"])
    with pytest.raises(errors.ColumnNotFound, match="'w'"):
        client.submit_regression(path, "w", ["x"])


def test_text_column_is_refused_before_submission(client: Client, data_root: Path) -> None:
    path = write(data_root / "text.csv", "x,name,y\n1,a,2\n2,b,3\n3,c,5\n")

    with pytest.raises(errors.ColumnNotNumeric, match="'name'.*line 2: 'a'"):
        client.submit_regression(path, "y", ["x", "name"])


def test_non_numeric_cell_fails_the_job_naming_chunk_and_line(client: Client,
                                                              data_root: Path) -> None:
    lines = [f"{x},{2 * x + 1}" for x in range(1, 2001)]
    lines[1499] = "1500,oops"
    path = write(data_root / "bad-cell.csv", "x,y\n" + "\n".join(lines) + "\n")

    with pytest.raises(errors.ColumnNotNumeric) as raised:
        submit_and_wait(client, path, chunk_rows=500)

    message = str(raised.value)
    assert "chunk 2" in message and "line 1501" in message and "'oops'" in message


def test_all_rows_missing_is_a_clear_failure(client: Client, data_root: Path) -> None:
    path = write(data_root / "all-missing.csv", "x,y\n1,\n2,\n,3\n")

    with pytest.raises(errors.NoRowsLeft, match="no rows left"):
        submit_and_wait(client, path, chunk_rows=2)


def test_constant_feature_is_named(client: Client, data_root: Path) -> None:
    path = write(data_root / "constant.csv",
                 "x,c,y\n" + "".join(f"{x},7,{x * 3 + 1}\n" for x in range(20)))

    with pytest.raises(errors.ConstantColumn, match="'c'"):
        submit_and_wait(client, path, chunk_rows=6)


def test_feature_that_combines_others_is_named(client: Client, data_root: Path) -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=50), rng.normal(size=50)
    rows = "".join(f"{u!r},{v!r},{u - 2 * v!r},{u + v + rng.normal()!r}\n"
                   for u, v in zip(a.tolist(), b.tolist()))
    path = write(data_root / "collinear.csv", "a,b,c,y\n" + rows)

    with pytest.raises(errors.CollinearFeature, match="'c'.*intercept, a, b"):
        submit_and_wait(client, path, chunk_rows=9)


def test_fewer_rows_than_coefficients_is_refused(client: Client, data_root: Path) -> None:
    path = write(data_root / "short.csv", "a,b,y\n1,2,3\n2,1,4\n")

    with pytest.raises(errors.TooFewRows, match="2 usable rows for 3 coefficients"):
        submit_and_wait(client, path)


@pytest.mark.parametrize("text", ["", "x,y\n"])
def test_empty_file_is_refused(client: Client, data_root: Path, text: str) -> None:
    path = write(data_root / f"empty-{len(text)}.csv", text)

    with pytest.raises(errors.EmptyDataset):
        client.submit_regression(path, "y", ["x"])


def test_file_outside_the_data_root_is_refused(client: Client, tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.csv", "x,y\n1,2\n2,3\n3,5\n")

    with pytest.raises(errors.PathOutsideDataRoot):
        client.submit_regression(path, "y", ["x"])


def test_unsupported_suffix_is_refused(client: Client, data_root: Path) -> None:
    path = write(data_root / "table.xlsx", "x,y\n")

    with pytest.raises(errors.UnsupportedFormat, match=".xlsx"):
        client.submit_regression(path, "y")


def test_quoted_line_break_is_refused_before_submission(client: Client,
                                                        data_root: Path) -> None:
    path = write(data_root / "notes.csv", 'x,note,y\n1,ok,2\n2,"two\nlines",3\n3,ok,5\n')

    with pytest.raises(errors.MalformedCsv, match="notes.csv line 3"):
        client.submit_regression(path, "y", ["x"], chunk_rows=1)


def test_infinite_value_fails_naming_the_line(client: Client, data_root: Path) -> None:
    path = write(data_root / "infinite.csv", "x,y\n1,2\n2,inf\n3,5\n4,6\n")

    with pytest.raises(errors.ColumnNotNumeric, match="line 3.*infinite"):
        submit_and_wait(client, path, chunk_rows=2)


def test_repeated_feature_and_a_column_named_intercept_are_refused(client: Client,
                                                                   data_root: Path) -> None:
    path = write(data_root / "named.csv", "a,intercept,y\n1,2,3\n2,1,4\n3,3,3\n4,1,1\n")

    with pytest.raises(errors.LeptonError, match="'a' is listed twice"):
        client.submit_regression(path, "y", ["a", "a"])
    with pytest.raises(errors.LeptonError, match="'intercept' would clash"):
        client.submit_regression(path, "y", ["a", "intercept"])


def test_file_changed_after_submission_fails_the_job(client: Client, data_root: Path) -> None:
    path = write(data_root / "changing.csv",
                 "x,y\n" + "".join(f"{x},{x * 2 + 1}\n" for x in range(5000)))
    job_id = client.submit_regression(path, "y", ["x"], True, 1000)
    with open(path, "a") as handle:
        handle.write("5000,10001\n")

    with pytest.raises(errors.JobIncomplete, match="changed after the job was submitted"):
        client.wait(job_id, progress=False, timeout_s=60)


def test_object_npy_is_refused_clearly(client: Client, data_root: Path) -> None:
    path = data_root / "objects.npy"
    np.save(path, np.array([[1, "a"], [2, "b"]], dtype=object), allow_pickle=True)

    with pytest.raises(errors.UnsupportedFormat, match="memory-map"):
        client.submit_regression(path, "c1")
