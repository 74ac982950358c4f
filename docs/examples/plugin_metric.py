"""An example metric plugin (docs/extending.md): the mean absolute first-layer state of an RNN
cell at initialisation, registered as ``example_plugin_metric`` for the rnn space.

Run it as fitness, in-process or on Ray workers (each worker imports this module too)::

    PYTHONPATH=docs/examples python -m nas_engine.search --plugin plugin_metric \\
        --fitness example_plugin_metric --executor ray --workers 1
"""

from __future__ import annotations

from nas_engine.metrics import MetricFailure, register


@register(
    "example_plugin_metric",
    space="rnn",
    direction="higher",
    # The pass it reads: the states entering the layer-1 cell at every step (the RNN probe's
    # entering_states:1, which hidden_cov reads too, so the two share one forward).
    needs={"entering_states:1"},
    description="mean |state| entering the first cell (an example plugin)",
)
def example_plugin_metric(probe) -> float:
    states = probe.entering_states(1)  # (steps, batch, hidden)
    value = float(states.abs().mean())
    if value == 0.0:
        raise MetricFailure("every state is zero")  # recorded as a failed result, with this
    return value
