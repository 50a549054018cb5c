"""Which process of a multi-process run this is, read the way Lightning reads it.

A run's directory belongs to global rank 0.  Lightning finds the rank in the cluster environment
that launched the process: SLURM (``srun``: ``SLURM_PROCID``), torchrun (``RANK``), or its own
launcher (the processes it starts carry ``LOCAL_RANK``, a node started by hand ``NODE_RANK``).
Reading ``RANK`` alone would make every SLURM task rank 0, and each would write the run's files.
"""
from __future__ import annotations

from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment, TorchElasticEnvironment


def cluster_environment():
    """The environment Lightning will detect for this process (SLURM, torchrun, else its own)."""
    for environment in (SLURMEnvironment, TorchElasticEnvironment):
        if environment.detect():
            return environment()
    return LightningEnvironment()


def is_launched_worker() -> bool:
    """True in every process but the run's global rank 0, before Lightning has set up the group."""
    environment = cluster_environment()
    if isinstance(environment, LightningEnvironment):  # its global rank is set later; its launcher sets these
        return environment.local_rank() > 0 or environment.node_rank() > 0
    return environment.global_rank() > 0
