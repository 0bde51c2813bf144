"""The producer's API for shard sets: build one, look keys up on the owners, describe it."""

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from celery import chord
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from pyarrow import feather

from producer.client import Client, JobTimeout, rebuild_error, translate_redis_errors
from producer.progress_bar import progress_bar
from producer.shard_build import DEFAULT_SHARDS, build_shards
from producer.shard_keys import normalize_keys, read_keys_file
from producer.shard_routing import RoutedAsk, route_keys
from tasks.errors import EmptyKeys, JobFailed, LeptonError, NoLiveWorkers
from tasks.placement import KeyValue
from tasks.shard_index import merge_answers, table_from_text, table_to_text
from tasks.sharding import MANIFEST, Manifest, read_manifest, shard_set_dir
from workers.lookup_payloads import ask_key, store_tables
from workers.membership import live_members, node_queue
from workers.placement_store import PlacementRecord, current_placement
from workers.progress import count_done, first_failure, job_key, record_job
from workers.settings import Settings

logger = logging.getLogger(__name__)

GET_TIMEOUT_S = 30.0
# Waits wake at once on a result (Redis pub/sub); this only paces the liveness checks.
POLL_S = 0.2
MEMBER_WAIT_POLL_S = 0.05
# How long a read of the live set is reused, and how many stale keys may wait meanwhile.
LIVE_CACHE_S = 0.25
MAX_STALE_KEYS = 1000


@dataclass(frozen=True)
class LookupResult:
    """The answer to a look-up.

    ``frame`` is the left join of the keys with the shard set: one row per matching
    row, in key order, and one row with empty values per missing key; its columns are
    the dataset's, key first as in ``pandas.merge``.
    """

    frame: pd.DataFrame
    missing: list[KeyValue | None]
    n_keys: int
    n_missing: int
    nodes: list[str]
    elapsed_s: float
    job_id: str | None = None
    path: Path | None = None


class OwnersChanged(LeptonError):
    """An owner asked during a look-up left the live set; the look-up is routed again."""


class ShardClient:
    """Builds shard sets and answers look-ups on the cluster of ``settings``.

    ``health_check`` is called while waiting and may raise (a local cluster uses it to
    notice dead processes). Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, settings: Settings, health_check: Callable[[], None] | None = None
                 ) -> None:
        self.client = Client(settings)
        # A look-up is a few milliseconds of work: the "task-sent" event would be a fifth
        # of a single-key get. Flower still sees each look-up from the worker's events.
        self.client.app.conf.task_send_sent_event = False
        self.settings = settings
        self.health_check = health_check
        self._manifests: dict[str, tuple[float, Manifest]] = {}
        self._placements: dict[str, PlacementRecord] = {}
        # Result keys of finished look-ups, deleted in the next round trip to Redis.
        self._stale_keys: list[str] = []
        self._live: tuple[float, list[str]] | None = None

    def __enter__(self) -> "ShardClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete what finished look-ups left in Redis and close the connections."""
        try:
            if self._stale_keys:
                with translate_redis_errors(self.settings.broker_url):
                    self.client.redis.unlink(*self._stale_keys)
                self._stale_keys.clear()
        finally:
            self.client.close()

    def build(self, path: str | Path, key: str, shards: int = DEFAULT_SHARDS,
              name: str | None = None, nulls: str = "refuse",
              progress: bool = True) -> Manifest:
        """Build a shard set under this cluster's data root (see :func:`build_shards`)."""
        return build_shards(path, key, shards, name, nulls, settings=self.settings,
                            progress=progress)

    def placement(self, name: str) -> PlacementRecord:
        """Return the owner of every shard of ``name`` on the live workers, and its history."""
        return self._placement(self.manifest(name))

    def info(self, name: str) -> dict[str, Any]:
        """Describe a shard set and its placement on the live workers."""
        manifest = self.manifest(name)
        placement = self._placement(manifest)
        owners = {member: {"shards": 0, "rows": 0} for member in placement.members}
        for shard, owner in enumerate(placement.owners):
            owners[owner]["shards"] += 1
            owners[owner]["rows"] += manifest.shard_rows[shard]
        mean = manifest.shard_count / len(owners)
        return {
            "name": manifest.name, "source": manifest.source, "key": manifest.key,
            "key_type": manifest.key_type, "build_id": manifest.build_id,
            "shards": manifest.shard_count, "rows": manifest.rows,
            "null_rows": manifest.null_rows, "columns": manifest.columns,
            "members": placement.members, "owners": owners,
            "balance": max(owner["shards"] for owner in owners.values()) / mean,
            "epoch": placement.epoch, "previous_members": placement.previous_members,
            "moved_at_last_change": placement.moved, "changed_at": placement.changed_at,
        }

    def manifest(self, name: str) -> Manifest:
        """Return the manifest of ``name`` (re-read only when the file changes)."""
        path = shard_set_dir(self.settings.data_root, name) / MANIFEST
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = -1
        cached = self._manifests.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        manifest = read_manifest(self.settings.data_root, name)
        self._manifests[name] = (stamp, manifest)
        return manifest

    def get(self, name: str, keys: Iterable[Any], timeout_s: float = GET_TIMEOUT_S
            ) -> LookupResult:
        """Look a few keys up directly on their owners and merge here (no chord).

        Keys and rows travel inside the task messages; for many keys, :meth:`lookup`
        is faster.
        """
        started = time.perf_counter()
        manifest = self.manifest(name)
        wanted = self._keys(keys, manifest, "keys")
        deadline = time.monotonic() + timeout_s
        while True:
            placement = self._placement(manifest)
            routed, empty = route_keys(manifest, placement, wanted)
            results = [self._send(ask.owner, _request(manifest, placement, None, part,
                                                      {"ask": table_to_text(ask.ask)}))
                       for part, ask in enumerate(routed)]
            try:
                replies = self._await_all(results, routed, deadline)
            except OwnersChanged as change:
                logger.warning("lookup rerouted name=%s reason=%s", name, change)
                continue
            finally:
                self._forget([result.id for result in results])
            answers = [table_from_text(reply["answer"]) for reply in replies]
            table, missing = merge_answers(answers, manifest.key, manifest.key_type,
                                           len(wanted), empty)
            return LookupResult(
                frame=table.to_pandas(use_threads=False), missing=missing, n_keys=len(wanted),
                n_missing=len(missing), nodes=sorted({reply["node"] for reply in replies}),
                elapsed_s=time.perf_counter() - started)

    def lookup(self, name: str, keys: Iterable[Any], timeout_s: float | None = None,
               progress: bool = True, where: str = "keys", first_line: int | None = None
               ) -> LookupResult:
        """Look keys up as one chord: owners answer, a callback merges and writes the rows.

        The merged rows are written to ``LEPTON_RESULTS_DIR/<job_id>.arrow`` (Arrow IPC,
        ``pandas.read_feather`` reads it).
        """
        started = time.perf_counter()
        manifest = self.manifest(name)
        wanted = self._keys(keys, manifest, where, first_line)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job_id = str(uuid.uuid4())
            placement = self._placement(manifest)
            routed, empty = route_keys(manifest, placement, wanted)
            header_ids = self._submit_chord(manifest, placement, job_id, routed, empty,
                                            len(wanted))
            try:
                summary = self._await_chord(job_id, routed, deadline, progress, name)
            except OwnersChanged as change:
                logger.warning("lookup rerouted job=%s name=%s reason=%s", job_id, name, change)
                continue
            finally:
                self._forget(header_ids, job_id)
            path = Path(summary["path"])
            frame = feather.read_table(path).to_pandas()
            return LookupResult(
                frame=frame, missing=summary["missing"], n_keys=summary["n_keys"],
                n_missing=summary["n_missing"], nodes=summary["nodes"],
                elapsed_s=time.perf_counter() - started, job_id=job_id, path=path)

    def lookup_file(self, name: str, keys_path: str | Path, timeout_s: float | None = None,
                    progress: bool = True) -> LookupResult:
        """Look up the keys of a ``.txt``, ``.csv`` or ``.parquet`` file (one column)."""
        keys_path = Path(keys_path).expanduser()
        manifest = self.manifest(name)
        values, first_line = read_keys_file(keys_path, manifest.key)
        return self.lookup(name, values, timeout_s, progress, str(keys_path), first_line)

    def _keys(self, keys: Iterable[Any], manifest: Manifest, where: str,
              first_line: int | None = None) -> list[KeyValue | None]:
        wanted, empty = normalize_keys(keys, manifest.key_type, where, first_line)
        if len(wanted) == empty:
            raise EmptyKeys(f"{where}: no keys to look up" if not wanted else
                            f"{where}: all {len(wanted)} keys are empty")
        return wanted

    def _placement(self, manifest: Manifest) -> PlacementRecord:
        """Return the placement for the live members, recomputed when they changed."""
        members = self._live_members()
        cached = self._placements.get(manifest.name)
        if (cached is not None and cached.members == members
                and cached.shard_count == manifest.shard_count):
            return cached
        with translate_redis_errors(self.settings.broker_url):
            placement = current_placement(self.client.redis, manifest.name,
                                          manifest.shard_count, members)
        self._placements[manifest.name] = placement
        return placement

    def _live_members(self) -> list[str]:
        """Return the live members, waiting up to one member timeout for a first one.

        The answer is reused for ``LIVE_CACHE_S``: a look-up sent meanwhile to a node
        that just left is noticed by the wait, which reads the live set afresh.
        """
        started = time.monotonic()
        if (self._live is not None and started - self._live[0] < LIVE_CACHE_S
                and len(self._stale_keys) < MAX_STALE_KEYS):
            return self._live[1]
        deadline = started + self.settings.member_timeout_s
        while True:
            with translate_redis_errors(self.settings.broker_url):
                members = live_members(self.client.redis, self.settings.member_timeout_s,
                                       self._stale_keys)
            self._stale_keys.clear()
            if members:
                self._live = (started, members)
                return members
            if self.health_check is not None:
                self.health_check()
            if time.monotonic() > deadline:
                raise NoLiveWorkers(
                    f"no worker sent a heartbeat in the last {self.settings.member_timeout_s} "
                    "s: start one with `lepton worker`")
            time.sleep(MEMBER_WAIT_POLL_S)

    def _send(self, owner: str, request: dict[str, Any]) -> AsyncResult:
        with translate_redis_errors(self.settings.broker_url):
            return self.client.app.signature("lepton.shard.lookup", args=(request,),
                                             **_route_to(owner)).apply_async()

    def _submit_chord(self, manifest: Manifest, placement: PlacementRecord, job_id: str,
                      routed: list[RoutedAsk], empty: list[int], n_keys: int) -> list[str]:
        header = [self.client.app.signature(
            "lepton.shard.lookup", task_id=str(uuid.uuid4()), **_route_to(ask.owner),
            args=(_request(manifest, placement, job_id, part,
                           {"ask_key": ask_key(job_id, part)}),))
            for part, ask in enumerate(routed)]
        job = {"job_id": job_id, "name": manifest.name, "key": manifest.key,
               "key_type": manifest.key_type, "n_keys": n_keys, "n_parts": len(routed),
               "empty_positions": empty, "submitted_at": time.time()}
        callback = self.client.app.signature("lepton.shard.merge", kwargs={"job": job})
        with translate_redis_errors(self.settings.broker_url):
            store_tables(self.client.redis, {ask_key(job_id, part): ask.ask
                                             for part, ask in enumerate(routed)},
                         self.settings.visibility_timeout_s)
            record_job(self.client.redis, job_id, {"kind": "shard-lookup",
                                                   "n_chunks": len(routed),
                                                   "source": manifest.name},
                       self.settings.result_expires_s)
            chord(header)(callback.set(task_id=job_id))
        logger.info("lookup submitted job=%s name=%s keys=%d parts=%d", job_id, manifest.name,
                    n_keys, len(routed))
        return [signature.id for signature in header]

    def _await_all(self, results: Sequence[AsyncResult], routed: Sequence[RoutedAsk],
                   deadline: float) -> list[dict[str, Any]]:
        answers = []
        for result in results:
            value = self._await_one(result, routed, deadline)
            if result.failed():
                raise _task_error(value)
            answers.append(value)
        return answers

    def _await_chord(self, job_id: str, routed: Sequence[RoutedAsk],
                     deadline: float | None, progress: bool, name: str) -> dict[str, Any]:
        result = self.client.app.AsyncResult(job_id)
        with progress_bar(len(routed), "part", f"lookup {name}", progress) as bar:
            def report() -> None:
                failure = first_failure(self.client.redis, job_id)
                if failure is not None:
                    raise rebuild_error(*failure)
                bar.update(count_done(self.client.redis, job_id) - bar.n)

            value = self._await_one(result, routed, deadline, report)
            bar.update(bar.total - bar.n)
        if result.failed():
            failure = first_failure(self.client.redis, job_id)
            raise rebuild_error(*failure) if failure else _task_error(value)
        return dict(value)

    def _await_one(self, result: AsyncResult, routed: Sequence[RoutedAsk],
                   deadline: float | None, report: Callable[[], None] | None = None) -> Any:
        """Wait for ``result``; between polls check progress, owners and the deadline."""
        owners = {ask.owner for ask in routed}
        while True:
            with translate_redis_errors(self.settings.broker_url):
                try:
                    return result.get(timeout=POLL_S, propagate=False)
                except CeleryTimeoutError:
                    pass  # not a Redis timeout: the answer is not there yet
            with translate_redis_errors(self.settings.broker_url):
                if report is not None:
                    report()
                live = set(live_members(self.client.redis, self.settings.member_timeout_s))
            if not owners <= live:
                self._live = None
                raise OwnersChanged(f"owners left: {', '.join(sorted(owners - live))}")
            if self.health_check is not None:
                self.health_check()
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeout(f"look-up {result.id} did not finish in time")

    def _forget(self, task_ids: Sequence[str], job_id: str | None = None) -> None:
        """Mark the per-part results and progress keys of a finished look-up for deletion."""
        backend = self.client.app.backend
        self._stale_keys += [backend.get_key_for_task(task_id).decode() for task_id in task_ids]
        if job_id is not None:
            self._stale_keys += [f"{job_key(job_id)}{suffix}"
                                 for suffix in ("", ":done", ":errors")]


def _route_to(owner: str) -> dict[str, str]:
    """Options sending a task straight to ``owner``'s queue.

    The nameless exchange names the queue itself, which spares the broker a look-up of
    the exchange's bindings on every message.
    """
    return {"queue": node_queue(owner), "exchange": "", "routing_key": node_queue(owner)}


def _request(manifest: Manifest, placement: PlacementRecord, job_id: str | None, part: int,
             ask: dict[str, str]) -> dict[str, Any]:
    """Return the JSON argument of one look-up task; ``ask`` holds its keys or their key."""
    return {"name": manifest.name, "build_id": manifest.build_id,
            "build_dir": manifest.build_dir, "key": manifest.key, "epoch": placement.epoch,
            "job_id": job_id, "part": part, **ask}


def _task_error(value: Any) -> LeptonError:
    if isinstance(value, LeptonError):
        return value
    return JobFailed(f"look-up failed on a worker: {type(value).__name__}: {value}")
