"""Build a shard set on this machine, with a progress bar (no worker is needed)."""

import logging
import re
from pathlib import Path

from producer.progress_bar import progress_bar
from tasks.data_root import relative_to_root
from tasks.errors import DatasetError, DatasetNotFound, ShardSetNotFound
from tasks.sharding import NULL_POLICIES, Manifest, build_shard_set, read_manifest
from workers.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_SHARDS = 64


def build_shards(path: str | Path, key: str, shards: int = DEFAULT_SHARDS,
                 name: str | None = None, nulls: str = "refuse", *,
                 settings: Settings | None = None, progress: bool = True) -> Manifest:
    """Partition a CSV or Parquet dataset into ``shards`` Parquet shards under the data root.

    ``name`` defaults to the file's stem. ``nulls`` is ``"refuse"`` (rows with an empty
    key raise) or ``"set-aside"``. Runs on this machine; no worker is needed.
    """
    settings = settings or Settings.from_env()
    if shards < 1:
        raise DatasetError(f"the shard count must be at least 1, got {shards}")
    if nulls not in NULL_POLICIES:
        raise DatasetError(f"nulls must be one of {', '.join(NULL_POLICIES)}, got {nulls!r}")
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetNotFound(f"{path.resolve()}: no such file")
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem).lstrip(".-") or "shards"
    _warn_if_replacing(settings.data_root, name, key)
    # Like every other input, the source must sit below the data root: the shards it
    # becomes are served to anyone who can submit a lookup.
    source = relative_to_root(path, settings.data_root)
    with progress_bar(shards, "shard", f"build {name}", progress) as bar:
        manifest = build_shard_set(path.resolve(), source, key, shards, name,
                                   settings.data_root, nulls, on_shard=lambda _: bar.update(1))
    logger.info("shard set built name=%s shards=%d rows=%d nulls=%d", name, shards,
                manifest.rows, manifest.null_rows)
    return manifest


def _warn_if_replacing(data_root: Path, name: str, key: str) -> None:
    # The name defaults to the file's stem, so a rebuild by another key can replace a set
    # that look-ups still expect to be keyed by the old column.
    try:
        previous = read_manifest(data_root, name)
    except ShardSetNotFound:
        return
    if previous.key != key:
        logger.warning("shard set %r, keyed by %r, is replaced by one keyed by %r "
                       "(give --name to keep both)", name, previous.key, key)
