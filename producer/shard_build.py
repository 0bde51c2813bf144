"""Build a shard set on this machine, with a progress bar (no worker is needed)."""

import logging
import re
from pathlib import Path

from producer.progress_bar import progress_bar
from tasks.data_root import relative_to_root
from tasks.errors import DatasetError, DatasetNotFound
from tasks.sharding import NULL_POLICIES, Manifest, build_shard_set
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
        raise DatasetNotFound(f"{path}: no such file")
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem).lstrip(".-") or "shards"
    # Like every other input, the source must sit below the data root: the shards it
    # becomes are served to anyone who can submit a lookup.
    source = relative_to_root(path, settings.data_root)
    with progress_bar(shards, "shard", f"build {name}", progress) as bar:
        manifest = build_shard_set(path.resolve(), source, key, shards, name,
                                   settings.data_root, nulls, on_shard=lambda _: bar.update(1))
    logger.info("shard set built name=%s shards=%d rows=%d nulls=%d", name, shards,
                manifest.rows, manifest.null_rows)
    return manifest
