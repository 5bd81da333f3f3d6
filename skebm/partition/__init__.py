"""Estimates of the log-partition function log Z = log ∫ exp(-E(x)) dx (layer C).

Every estimator returns a :class:`PartitionEstimate`, ``(log_z, stderr)`` as
Python floats with diagnostics: ``stderr`` is 0 for a closed form, a
discretization error estimate for quadrature, and the Monte Carlo standard
error for (annealed) importance sampling.

One file a family: :mod:`~skebm.partition.continuous` (Gaussian closed form,
quadrature, importance sampling, AIS), :mod:`~skebm.partition.binary`
(enumeration, AIS from independent bits), :mod:`~skebm.partition.estimate`
(the estimate and its diagnostics from log weights).
"""

# States in counting order, kept importable here (below both samplers and log Z).
from .._enumeration import binary_states as binary_states
from .binary import log_partition_ais_binary, log_partition_enumerate
from .continuous import (
    log_partition_ais,
    log_partition_conditional,
    log_partition_gaussian,
    log_partition_importance,
    log_partition_quadrature,
)
from .estimate import (
    PartitionEstimate,
    grow_importance_estimate,
    importance_estimate,
    pareto_tail_index,
)

__all__ = [
    "PartitionEstimate",
    "grow_importance_estimate",
    "importance_estimate",
    "log_partition_ais",
    "log_partition_ais_binary",
    "log_partition_conditional",
    "log_partition_enumerate",
    "log_partition_gaussian",
    "log_partition_importance",
    "log_partition_quadrature",
    "pareto_tail_index",
]
