"""Lepton's exception tree.

Every error a user can see derives from :class:`LeptonError`. Each class takes one
message string, so Celery can rebuild it from JSON on the producer side.
"""


class LeptonError(Exception):
    """Base of every error Lepton raises on purpose."""


class ConfigError(LeptonError):
    """A ``LEPTON_*`` setting is missing or invalid."""


class DatasetError(LeptonError):
    """The input dataset cannot be used as asked."""


class DatasetNotFound(DatasetError):
    """The dataset file does not exist."""


class PathOutsideDataRoot(DatasetError):
    """A path resolves outside the configured data root."""


class UnsupportedFormat(DatasetError):
    """The file is not CSV, Parquet or NPY."""


class EmptyDataset(DatasetError):
    """The dataset holds no data rows."""


class MalformedCsv(DatasetError):
    """A CSV file Lepton cannot cut into chunks."""


class ColumnNotFound(DatasetError):
    """A requested column is not in the dataset."""


class ColumnNotNumeric(DatasetError):
    """A column, or a cell in it, does not hold a number."""


class FitError(LeptonError):
    """The data cannot give a well-defined least-squares fit."""


class NoRowsLeft(FitError):
    """Every row had a missing value in a used column."""


class TooFewRows(FitError):
    """Fewer usable rows than coefficients."""


class ConstantColumn(FitError):
    """A feature or the target takes a single value."""


class CollinearFeature(FitError):
    """A feature is an exact linear combination of earlier ones."""


class JobIncomplete(LeptonError):
    """The reduce did not receive every planned chunk exactly once."""


class JobFailed(LeptonError):
    """A job's task failed; the message carries the task's own error."""


class JobNotFound(LeptonError):
    """No job or result is known under this id."""


class BrokerUnavailable(LeptonError):
    """Redis cannot be reached or refuses the connection."""


class ClusterError(LeptonError):
    """The local Redis or worker processes failed to start or died."""


class OptimizationError(LeptonError):
    """An optimisation job cannot run as asked."""


class UnknownObjective(OptimizationError):
    """No objective is registered under the requested name."""


class InvalidBounds(OptimizationError):
    """A bound is not finite, or a lower bound is not below its upper bound."""


class InvalidSearchSetting(OptimizationError):
    """A dimension, population, generation count, batch size, seed or target is invalid."""


class JobStopped(OptimizationError):
    """An optimisation job stopped before finishing; ``lepton resume`` continues it."""


class ShardSetNotFound(LeptonError):
    """No shard set is built under this name."""


class NullKeys(DatasetError):
    """The key column holds empty values and the user asked to refuse them."""


class UnsupportedKeyType(DatasetError):
    """The key column is neither integer nor string, or a key does not match its type."""


class EmptyKeys(DatasetError):
    """A keys file or key list holds no keys."""


class NoLiveWorkers(LeptonError):
    """No worker has sent a heartbeat recently enough to own shards."""
