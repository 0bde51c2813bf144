"""Lepton's producer: plan datasets into chunks, submit jobs, wait for and fetch results."""

from producer.client import Client
from producer.local_cluster import LocalCluster
from producer.node_cluster import NodeCluster, connect_shards
from producer.optimization import optimize, resume
from producer.run import connect, regress
from producer.shard_build import build_shards
from producer.shard_client import LookupResult, ShardClient

__all__ = ["Client", "LocalCluster", "LookupResult", "NodeCluster", "ShardClient",
           "build_shards", "connect", "connect_shards", "optimize", "regress", "resume"]
