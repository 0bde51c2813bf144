"""Building a shard set loses and duplicates no row, and refuses bad input clearly."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_settings

from producer.shard_build import build_shards
from tasks.errors import (
    ColumnNotFound,
    EmptyDataset,
    JobIncomplete,
    NullKeys,
    ShardSetNotFound,
    UnsupportedKeyType,
)
from tasks.placement import shard_of
from tasks.shard_index import ShardIndex, merge_answers
from tasks.sharding import ROW_COLUMN, build_shard_set, read_manifest


def keyed_frame(rng: np.random.Generator, rows: int, key_kind: str) -> pd.DataFrame:
    """Rows with a key column (repeats included), a float, a string and an int column."""
    codes = rng.integers(0, rows // 2, rows)
    keys = codes if key_kind == "int" else np.array([f"K{code:05d}" for code in codes])
    return pd.DataFrame({
        "key": keys, "value": rng.normal(size=rows),
        "label": [f"row {index}" for index in range(rows)],
        "count": rng.integers(0, 100, rows),
    })


def read_all_shards(root: Path, name: str) -> pd.DataFrame:
    manifest = read_manifest(root, name)
    frames = []
    for shard in range(manifest.shard_count):
        frame = pq.read_table(root / manifest.shard_path(shard)).to_pandas()
        assert all(shard_of(key, manifest.shard_count) == shard for key in frame["key"])
        frames.append(frame)
    nulls = root / manifest.build_dir / "nulls.parquet"
    if nulls.exists():
        frames.append(pq.read_table(nulls).to_pandas())
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("key_kind", ["int", "str"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_every_row_lands_in_exactly_one_shard_chosen_by_its_key(
        tmp_path: Path, key_kind: str, suffix: str) -> None:
    frame = keyed_frame(np.random.default_rng(5), 2000, key_kind)
    path = tmp_path / f"data{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)

    manifest = build_shard_set(path, path.name, "key", 37, "data", tmp_path)

    assert manifest.key_type == key_kind
    assert manifest.rows == 2000 and sum(manifest.shard_rows) == 2000
    stored = read_all_shards(tmp_path, "data")
    assert sorted(stored[ROW_COLUMN]) == list(range(2000))
    restored = stored.sort_values(ROW_COLUMN).drop(columns=ROW_COLUMN).reset_index(drop=True)
    pd.testing.assert_frame_equal(restored, frame, check_dtype=False)


def test_empty_keys_are_refused_by_default_with_their_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"key": ["a", None, "c", None], "value": [1, 2, 3, 4]})
    frame.to_parquet(tmp_path / "holes.parquet")

    with pytest.raises(NullKeys, match=r"empty in 2 rows \(first at data row 2\).*set-aside"):
        build_shard_set(tmp_path / "holes.parquet", "holes.parquet", "key", 4, "holes",
                        tmp_path)


def test_empty_keys_set_aside_are_kept_apart_and_counted(tmp_path: Path) -> None:
    frame = pd.DataFrame({"key": [1, None, 3, None, 5], "value": [1.0, 2.0, 3.0, 4.0, 5.0]},
                         dtype="Int64")
    frame.to_parquet(tmp_path / "holes.parquet")

    manifest = build_shard_set(tmp_path / "holes.parquet", "holes.parquet", "key", 4,
                               "holes", tmp_path, nulls="set-aside")

    assert (manifest.rows, manifest.null_rows, sum(manifest.shard_rows)) == (5, 2, 3)
    stored = read_all_shards(tmp_path, "holes").sort_values(ROW_COLUMN)
    assert stored[ROW_COLUMN].tolist() == [0, 1, 2, 3, 4]
    assert stored["key"].isna().tolist() == [False, True, False, True, False]


def test_unknown_key_column_names_the_columns(tmp_path: Path) -> None:
    keyed_frame(np.random.default_rng(1), 20, "int").to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ColumnNotFound, match=r"no key column 'tailnum' \(columns: key, value"):
        build_shard_set(tmp_path / "d.csv", "d.csv", "tailnum", 4, "d", tmp_path)


def test_float_keys_are_refused(tmp_path: Path) -> None:
    keyed_frame(np.random.default_rng(1), 20, "int").to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(UnsupportedKeyType, match="'value' has type double"):
        build_shard_set(tmp_path / "d.csv", "d.csv", "value", 4, "d", tmp_path)


def test_a_file_with_a_header_only_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("key,value\n")
    with pytest.raises(EmptyDataset, match="no data rows"):
        build_shard_set(tmp_path / "empty.csv", "empty.csv", "key", 4, "e", tmp_path)


def test_names_that_could_escape_the_shard_directory_are_refused(tmp_path: Path) -> None:
    for name in ("../up", ".hidden", "a/b", ""):
        with pytest.raises(ShardSetNotFound, match="invalid shard set name"):
            read_manifest(tmp_path, name)


def test_unknown_shard_set_lists_the_known_ones(tmp_path: Path) -> None:
    keyed_frame(np.random.default_rng(1), 20, "int").to_csv(tmp_path / "d.csv", index=False)
    build_shard_set(tmp_path / "d.csv", "d.csv", "key", 4, "known", tmp_path)
    with pytest.raises(ShardSetNotFound, match=r"no shard set named 'other'.*known: known"):
        read_manifest(tmp_path, "other")


def test_a_rebuild_replaces_the_previous_build(tmp_path: Path) -> None:
    keyed_frame(np.random.default_rng(1), 50, "int").to_csv(tmp_path / "d.csv", index=False)
    first = build_shard_set(tmp_path / "d.csv", "d.csv", "key", 4, "d", tmp_path)
    second = build_shard_set(tmp_path / "d.csv", "d.csv", "key", 8, "d", tmp_path)

    assert read_manifest(tmp_path, "d") == second
    assert not (tmp_path / first.build_dir).exists()
    assert (tmp_path / second.shard_path(7)).exists()


def test_rebuilding_a_set_by_another_key_warns(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    keyed_frame(np.random.default_rng(1), 50, "int").to_csv(tmp_path / "d.csv", index=False)
    settings = make_settings(tmp_path)
    build_shards(tmp_path / "d.csv", "key", 4, settings=settings, progress=False)
    build_shards(tmp_path / "d.csv", "key", 8, settings=settings, progress=False)
    assert "is replaced" not in caplog.text

    build_shards(tmp_path / "d.csv", "count", 4, settings=settings, progress=False)

    assert "shard set 'd', keyed by 'key', is replaced by one keyed by 'count'" in caplog.text


def test_merged_answers_equal_a_pandas_left_merge_in_key_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    frame = keyed_frame(rng, 600, "str")
    frame.to_parquet(tmp_path / "d.parquet")
    manifest = build_shard_set(tmp_path / "d.parquet", "d.parquet", "key", 5, "d", tmp_path)
    keys = [f"K{code:05d}" for code in rng.integers(0, 400, 300)]

    answers = []
    for shard in range(5):
        index = ShardIndex.load(tmp_path / manifest.shard_path(shard), "key")
        positions = np.array([position for position, key in enumerate(keys)
                              if shard_of(key, 5) == shard], dtype=np.int64)
        answers.append(index.lookup(pa.array([keys[p] for p in positions]), positions))
    merged, missing = merge_answers(answers[::-1], "key", "str", len(keys))

    expected = pd.DataFrame({"key": keys}).merge(frame, on="key", how="left")
    pd.testing.assert_frame_equal(merged.to_pandas(), expected, check_dtype=False)
    assert missing == [key for key in keys if key not in set(frame["key"])]


def test_answers_that_miss_or_repeat_a_key_position_are_refused(tmp_path: Path) -> None:
    frame = keyed_frame(np.random.default_rng(2), 40, "int")
    frame.to_parquet(tmp_path / "d.parquet")
    manifest = build_shard_set(tmp_path / "d.parquet", "d.parquet", "key", 1, "d", tmp_path)
    index = ShardIndex.load(tmp_path / manifest.shard_path(0), "key")
    answer = index.lookup(pa.array([1, 2, 3]), np.array([0, 1, 2]))

    with pytest.raises(JobIncomplete, match=r"positions \[3\] are unanswered"):
        merge_answers([answer], "key", "int", 4)
    with pytest.raises(JobIncomplete, match=r"positions \[0, 1, 2\] are unanswered or "
                       "answered twice"):
        merge_answers([answer, answer], "key", "int", 3)


def test_building_from_a_file_outside_the_data_root_is_refused(tmp_path: Path) -> None:
    from producer.shard_build import build_shards
    from tasks.errors import PathOutsideDataRoot
    from tests.conftest import make_settings

    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside.csv"
    outside.write_text("k,v\n1,2\n2,3\n")
    (root / "link.csv").symlink_to(outside)

    for path in (outside, root / "link.csv", root / ".." / "outside.csv"):
        with pytest.raises(PathOutsideDataRoot):
            build_shards(path, "k", 4, settings=make_settings(root), progress=False)
