"""Lepton's producer: plan datasets into chunks, submit jobs, wait for and fetch results."""

from producer.client import Client
from producer.local_cluster import LocalCluster
from producer.optimization import optimize, resume
from producer.run import connect, regress

__all__ = ["Client", "LocalCluster", "connect", "optimize", "regress", "resume"]
