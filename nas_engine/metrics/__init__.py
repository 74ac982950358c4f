"""The metric registry: each space's metrics, by name (a space's package registers them)."""

from .eig import eig_score
from .registry import (
    Measured,
    Metric,
    MetricFailure,
    get_metric,
    metric_names,
    metrics_of,
    register,
)

__all__ = [
    "Measured",
    "Metric",
    "MetricFailure",
    "eig_score",
    "get_metric",
    "metric_names",
    "metrics_of",
    "register",
]
