"""``lepton shard ...``: build a shard set, look keys up on its owners, describe it."""

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from producer.arguments import output_path, positive_int, refuse_overwriting_inputs
from producer.node_cluster import connect_shards
from producer.shard_build import DEFAULT_SHARDS, build_shards
from producer.shard_client import LookupResult
from producer.shard_keys import KEYS_FORMATS
from tasks.errors import UnsupportedFormat
from tasks.sharding import NULL_POLICIES
from workers.settings import Settings

MISSING_SHOWN = 20
WORKERS_HELP = "worker nodes of the local cluster (default 2; ignored with LEPTON_BROKER_URL)"


def add_commands(commands: Any) -> None:
    """Add ``lepton shard build|get|lookup|info`` to the ``lepton`` command."""
    shard = commands.add_parser("shard", help="shard sets: key look-up spread over the workers")
    actions = shard.add_subparsers(required=True, metavar="ACTION")

    build = actions.add_parser("build", help="partition a dataset into shards by a key")
    build.add_argument("path", type=Path, help="CSV (with header) or Parquet file")
    build.add_argument("--key", required=True, help="key column (integers or strings)")
    build.add_argument("--shards", type=int, default=DEFAULT_SHARDS)
    build.add_argument("--name", default=None, help="shard set name (default: file stem)")
    build.add_argument("--nulls", choices=NULL_POLICIES, default="refuse",
                       help="rows with an empty key: refuse the build or set them aside")
    build.set_defaults(handler=run_build)

    get = actions.add_parser("get", help="print the rows of a few keys")
    get.add_argument("name")
    get.add_argument("keys", nargs="+", metavar="KEY")
    get.add_argument("--workers", type=positive_int, default=None, help=WORKERS_HELP)
    get.set_defaults(handler=run_get)

    lookup = actions.add_parser("lookup", help="look up a file of keys (one column)")
    lookup.add_argument("name")
    lookup.add_argument("keys_file", type=Path,
                        help=f"keys, one per line or one column ({', '.join(KEYS_FORMATS)})")
    lookup.add_argument("--out", type=output_path, default=None,
                        help="write rows here (.csv/.parquet)")
    lookup.add_argument("--workers", type=positive_int, default=None, help=WORKERS_HELP)
    lookup.set_defaults(handler=run_lookup)

    info = actions.add_parser("info", help="shards, rows, owners, balance, last move")
    info.add_argument("name")
    info.add_argument("--workers", type=positive_int, default=None, help=WORKERS_HELP)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=run_info)


def run_build(args: argparse.Namespace) -> int:
    """Build the shard set on this machine and print what it holds."""
    settings = Settings.from_env()
    manifest = build_shards(args.path, args.key, args.shards, args.name, args.nulls,
                            settings=settings)
    sizes = manifest.shard_rows
    print(f"shard set {manifest.name}: {manifest.rows:,} rows of {manifest.source} by "
          f"'{manifest.key}' ({manifest.key_type}) in {manifest.shard_count} shards "
          f"(rows per shard {min(sizes)} to {max(sizes)})")
    if manifest.null_rows:
        print(f"{manifest.null_rows:,} rows with an empty key set aside")
    print(f"wrote {settings.data_root / manifest.build_dir}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    """Print the rows of the keys given on the command line."""
    with connect_shards(workers=args.workers) as (shards, _):
        result = shards.get(args.name, args.keys)
    print(_table(result.frame))
    _print_missing(result)
    return 0


def run_lookup(args: argparse.Namespace) -> int:
    """Look up a keys file; print a summary and write the rows where asked."""
    if args.out is not None and args.out.suffix.lower() not in (".csv", ".parquet"):
        raise UnsupportedFormat(f"{args.out}: --out must end in .csv or .parquet")
    refuse_overwriting_inputs([args.keys_file], [args.out])
    with connect_shards(workers=args.workers) as (shards, _):
        result = shards.lookup_file(args.name, args.keys_file)
    print(f"{result.n_keys:,} keys, {len(result.frame):,} rows, {result.n_missing:,} missing, "
          f"{result.elapsed_s:.3f} s ({result.n_keys / result.elapsed_s:,.0f} keys/s) on "
          f"{len(result.nodes)} node(s)")
    _print_missing(result)
    print(f"result: {result.path}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix.lower() == ".csv":
            result.frame.to_csv(args.out, index=False)
        else:
            result.frame.to_parquet(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print a shard set's size and its placement on the live workers."""
    with connect_shards(workers=args.workers) as (shards, _):
        info = shards.info(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"shard set {info['name']}: {info['rows']:,} rows of {info['source']} by "
          f"'{info['key']}' ({info['key_type']}), {info['shards']} shards, "
          f"{info['null_rows']:,} rows set aside")
    print(f"{'owner':<40}{'shards':>8}{'rows':>12}")
    for owner, held in info["owners"].items():
        print(f"{owner:<40}{held['shards']:>8}{held['rows']:>12,}")
    print(f"balance (most shards / mean) {info['balance']:.3f}   placement epoch "
          f"{info['epoch']}   shards moved at the last membership change "
          f"{info['moved_at_last_change']}")
    return 0


def _table(frame: pd.DataFrame) -> str:
    with pd.option_context("display.max_columns", None, "display.width", 200):
        return frame.to_string(index=False)


def _print_missing(result: LookupResult) -> None:
    if result.n_missing:
        shown = ", ".join(repr(key) for key in result.missing[:MISSING_SHOWN])
        more = f" and {result.n_missing - MISSING_SHOWN:,} more" if (
            result.n_missing > MISSING_SHOWN) else ""
        print(f"missing {result.n_missing:,} key(s): {shown}{more}")
