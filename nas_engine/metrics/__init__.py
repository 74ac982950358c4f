"""Training-free metrics, by name. Importing this package registers every metric."""

from . import bert as _bert  # noqa: F401  (the transformer metrics, space bert)
from . import rnn as _rnn  # noqa: F401  (registers the RNN metrics)
from . import rnn_activation as _rnn_activation  # noqa: F401
from . import rnn_gradient as _rnn_gradient  # noqa: F401
from . import rnn_jacobian as _rnn_jacobian  # noqa: F401
from . import rnn_trained as _rnn_trained  # noqa: F401  (the trained proxy)
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
