"""Checkpoints of optimisation jobs, kept in Redis so that any worker can continue them.

One hash per job, ``lepton:opt:<id>``, holds:

- ``config`` and ``state``: the search settings and the scalars of the state awaiting
  evaluation (JSON, see :mod:`tasks.search`), and ``generation``, the state's generation;
- ``a:<name>``: each array of that state as raw float64 bytes (no text conversion, so a
  generation of many thousands of candidates is stored in milliseconds), except the
  candidates, which have their own key ``lepton:opt:<id>:candidates`` so that each
  fitness task reads just its rows (``GETRANGE``) instead of receiving them in a message;
- ``status``: ``running``, ``stopped``, ``done`` or ``failed`` (with ``error``);
- ``stop_requested``: ``1`` once a stop was asked for; the next generation stops;
- ``best_f``: the best fitness so far (JSON, ``null`` before any valid one), for watchers;
- ``dispatched``: the last generation whose fitness tasks were enqueued;
- ``elapsed_s`` and ``updated_at``: seconds spent running, and the wall-clock time of
  the last change, so that a paused job does not count its pause;
- ``redelivered``: fitness tasks that ran more than once (a worker died under them);
- ``file_saved_at``: when the checkpoint was last copied to the results directory.

Each advance also adds the generation to the job's ``done`` set of
:mod:`workers.progress`, so ``lepton status`` counts generations as its chunks.

Advancing a checkpoint is one atomic step conditioned on the generation it advances
from, so a generation callback delivered twice advances the job once.
"""

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from tasks.errors import JobStopped, LeptonError
from workers.progress import job_key

STATUSES = ("running", "stopped", "done", "failed")
CANDIDATES = "candidates"

# Advance only from the expected generation of a running job; a stop asked for in the
# meantime turns ``running`` into ``stopped``. Returns the new status, or "" if stale.
_ADVANCE = """
local job = KEYS[1]
if redis.call('HGET', job, 'generation') ~= ARGV[1] then return '' end
if redis.call('HGET', job, 'status') ~= 'running' then return '' end
local status = ARGV[5]
if status == 'running' and redis.call('HGET', job, 'stop_requested') == '1' then
  status = 'stopped'
end
redis.call('HSET', job, 'generation', ARGV[2], 'state', ARGV[3], 'best_f', ARGV[4],
           'status', status, 'elapsed_s', ARGV[6], 'updated_at', ARGV[7])
for index = 10, #ARGV, 2 do
  redis.call('HSET', job, ARGV[index], ARGV[index + 1])
end
redis.call('EXPIRE', job, ARGV[8])
redis.call('SET', KEYS[4], ARGV[9], 'EX', ARGV[8])
redis.call('DEL', KEYS[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[8])
return status
"""


@dataclass(frozen=True)
class Checkpoint:
    """What Redis holds about an optimisation job (see the module docstring)."""

    config: dict[str, Any]
    state: dict[str, Any]
    arrays: dict[str, bytes]
    generation: int
    status: str
    stop_requested: bool
    dispatched: int
    best_f: float | None
    error: str | None
    elapsed_s: float
    updated_at: float
    redelivered: int
    file_saved_at: float

    def to_json(self) -> dict[str, Any]:
        """Return the checkpoint as the JSON object written to a checkpoint file."""
        encoded = {name: base64.b64encode(raw).decode("ascii")
                   for name, raw in self.arrays.items()}
        return {"config": self.config, "state": self.state, "arrays": encoded,
                "generation": self.generation,
                "status": self.status, "best_f": self.best_f, "error": self.error,
                "elapsed_s": self.elapsed_s, "redelivered": self.redelivered}


@dataclass(frozen=True)
class Progress:
    """The few fields a watcher polls: no candidates, so polling stays cheap."""

    generation: int
    status: str
    stop_requested: bool
    best_f: float | None
    error: str | None


def checkpoint_key(job_id: str) -> str:
    """Return the Redis key of a job's checkpoint hash."""
    return f"lepton:opt:{job_id}"


def candidates_key(job_id: str) -> str:
    """Return the key of the raw float64 candidates awaiting evaluation, row by row."""
    return f"lepton:opt:{job_id}:candidates"


def attempts_key(job_id: str, generation: int) -> str:
    """Return the key counting how often each fitness task of a generation started."""
    return f"lepton:opt:{job_id}:attempts:{generation}"


def arrays_from_json(encoded: dict[str, str]) -> dict[str, bytes]:
    """Return the raw arrays of a checkpoint file (inverse of the encoding in ``to_json``)."""
    return {name: base64.b64decode(text) for name, text in encoded.items()}


def write_checkpoint(client: redis.Redis, job_id: str, config: dict[str, Any],
                     state: dict[str, Any], arrays: dict[str, bytes], status: str,
                     expires_s: int, elapsed_s: float = 0.0, redelivered: int = 0) -> None:
    """Store a whole checkpoint (on submission, or when resuming from a file)."""
    key = checkpoint_key(job_id)
    fields: dict[str, str | bytes] = {
        "config": json.dumps(config), "state": json.dumps(state),
        "generation": str(state["generation"]), "status": status, "stop_requested": "0",
        "dispatched": "-1", "best_f": json.dumps(state["best_f"]), "error": "",
        "elapsed_s": repr(elapsed_s), "updated_at": repr(time.time()),
        "redelivered": str(redelivered),
    }
    fields.update({f"a:{name}": raw for name, raw in arrays.items() if name != CANDIDATES})
    with client.pipeline() as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, expires_s)
        pipe.set(candidates_key(job_id), arrays[CANDIDATES], ex=expires_s)
        pipe.execute()


def read_checkpoint(client: redis.Redis, job_id: str) -> Checkpoint | None:
    """Return a job's checkpoint, or None when Redis holds none."""
    with client.pipeline() as pipe:
        pipe.hgetall(checkpoint_key(job_id))
        pipe.get(candidates_key(job_id))
        stored, candidates = pipe.execute()
    raw_fields = {_text(name): value for name, value in stored.items()}
    if not raw_fields or candidates is None:
        return None
    arrays = {name[2:]: _bytes(value) for name, value in raw_fields.items()
              if name.startswith("a:")}
    arrays[CANDIDATES] = _bytes(candidates)
    fields = {name: _text(value) for name, value in raw_fields.items()
              if not name.startswith("a:")}
    return Checkpoint(
        config=json.loads(fields["config"]), state=json.loads(fields["state"]),
        arrays=arrays,
        generation=int(fields["generation"]), status=fields["status"],
        stop_requested=fields.get("stop_requested") == "1",
        dispatched=int(fields.get("dispatched", "-1")),
        best_f=json.loads(fields.get("best_f", "null")), error=fields.get("error") or None,
        elapsed_s=float(fields.get("elapsed_s", "0")),
        updated_at=float(fields.get("updated_at", "0")),
        redelivered=int(fields.get("redelivered", "0")),
        file_saved_at=float(fields.get("file_saved_at", "0")))


def read_progress(client: redis.Redis, job_id: str) -> Progress | None:
    """Return the generation, status and best fitness of a job, or None if unknown."""
    generation, status, stop, best_f, error = client.hmget(
        checkpoint_key(job_id), ["generation", "status", "stop_requested", "best_f", "error"])
    if generation is None or status is None:
        return None
    return Progress(int(generation), _text(status), stop == b"1" or stop == "1",
                    json.loads(best_f) if best_f else None,
                    _text(error) if error else None)


def advance_checkpoint(client: redis.Redis, job_id: str, from_generation: int,
                       state: dict[str, Any], arrays: dict[str, bytes], status: str,
                       elapsed_s: float, expires_s: int) -> str | None:
    """Store the state that follows ``from_generation`` unless another call already did.

    ``status`` is ``running`` or ``done``; a pending stop request turns ``running`` into
    ``stopped``. Returns the status stored, or None when the checkpoint was no longer
    at ``from_generation`` (a duplicate callback) or the job is not running.
    """
    script = client.register_script(_ADVANCE)
    array_args: list[str | bytes] = []
    for name, raw in arrays.items():
        if name != CANDIDATES:
            array_args += [f"a:{name}", raw]
    stored = script(
        keys=[checkpoint_key(job_id), attempts_key(job_id, from_generation),
              f"{job_key(job_id)}:done", candidates_key(job_id)],
        args=[str(from_generation), str(state["generation"]), json.dumps(state),
              json.dumps(state["best_f"]), status, repr(elapsed_s), repr(time.time()),
              str(expires_s), arrays[CANDIDATES], *array_args])
    text = _text(stored)
    return text or None


def mark_dispatched(client: redis.Redis, job_id: str, generation: int) -> None:
    """Record that the fitness tasks of ``generation`` are enqueued."""
    client.hset(checkpoint_key(job_id), "dispatched", str(generation))


def mark_file_saved(client: redis.Redis, job_id: str) -> None:
    """Record that the checkpoint was just copied to a file."""
    client.hset(checkpoint_key(job_id), "file_saved_at", repr(time.time()))


def fetch_batch(client: redis.Redis, job_id: str, generation: int, batch_index: int,
                byte_range: tuple[int, int], expires_s: int) -> bytes | None:
    """Count a start of a fitness task and return its candidates' bytes [first, end).

    Returns None when the job has left ``generation`` (the task is a stale duplicate
    whose chord already completed). A second start of the same batch, after its worker
    died, is counted in ``redelivered``.
    """
    first, end = byte_range
    key = attempts_key(job_id, generation)
    with client.pipeline() as pipe:
        pipe.hget(checkpoint_key(job_id), "generation")
        pipe.getrange(candidates_key(job_id), first, end - 1)
        pipe.hincrby(key, str(batch_index), 1)
        pipe.expire(key, expires_s)
        current, raw, attempt, _ = pipe.execute()
    if int(attempt) > 1:
        client.hincrby(checkpoint_key(job_id), "redelivered", 1)
    if current is None or int(current) != generation:
        return None
    return _bytes(raw)


def mark_failed(client: redis.Redis, job_id: str, error: BaseException) -> None:
    """Record that a job failed and why, as ``module.Class: message``."""
    text = f"{type(error).__module__}.{type(error).__name__}: {error}"
    if client.exists(checkpoint_key(job_id)):
        client.hset(checkpoint_key(job_id), mapping={"status": "failed", "error": text})


def request_stop(client: redis.Redis, job_id: str) -> Progress:
    """Ask a running job to stop after its current generation; return its progress."""
    progress = read_progress(client, job_id)
    if progress is None:
        raise LeptonError(f"no optimisation job {job_id} in this cluster")
    if progress.status == "running":
        client.hset(checkpoint_key(job_id), "stop_requested", "1")
    return progress


def reopen(client: redis.Redis, job_id: str) -> None:
    """Mark a stopped or failed job running again, with no stop pending and the failures
    of its earlier attempt forgotten."""
    with client.pipeline() as pipe:
        pipe.hset(checkpoint_key(job_id), mapping={
            "status": "running", "stop_requested": "0", "error": "", "dispatched": "-1",
            "updated_at": repr(time.time())})
        pipe.delete(f"{job_key(job_id)}:errors")
        pipe.execute()


def optimization_state(client: redis.Redis, job_id: str, default: str) -> str:
    """Return ``STOPPED`` or ``FAILURE`` for a stopped or failed job, else ``default``."""
    progress = read_progress(client, job_id)
    if progress is None:
        return default
    return {"stopped": "STOPPED", "failed": "FAILURE"}.get(progress.status, default)


def not_finished_error(client: redis.Redis, job_id: str) -> LeptonError:
    """Return the error that explains why an optimisation job has no result yet."""
    progress = read_progress(client, job_id)
    if progress is None:
        return LeptonError(f"optimisation job {job_id} has no result and no checkpoint")
    if progress.status == "stopped":
        return JobStopped(f"job {job_id} stopped after generation {progress.generation}: "
                          f"run `lepton resume {job_id}` to continue")
    if progress.status == "failed":
        return LeptonError(f"job {job_id} failed: {progress.error}")
    return LeptonError(f"job {job_id} is still running: {progress.generation} generations "
                       "done")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
