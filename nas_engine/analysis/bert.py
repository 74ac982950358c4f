"""What the NAS-Bench-BERT analyses share (experiments/bert_*.py)."""

from __future__ import annotations


def as_trained_key(config, heads: bool = True) -> str:
    """The trained network of a configuration: hidden size, then per layer the heads (unless
    ``heads`` is False), the feed-forward depth n and, where n = 3, the width F (unused when
    n = 1). Two entries with one key trained the same network (as_trained.md)."""
    layers = [
        (f"h{x.num_operation_heads}" if heads else "")
        + f"n{x.num_feed_forward}"
        + (f"F{x.feed_forward_dimension}" if x.num_feed_forward == 3 else "")
        for x in config.layers
    ]
    return f"H{config.hidden_size}|" + "/".join(layers)


# The paper's published metric columns (networks_dev.csv) for each of our BERT metrics.
PAPER_COLUMNS = {
    "params": "paper_number_of_parameters",
    "head_confidence": "paper_head_confidence",
    "head_confidence_normalised": "paper_head_confidence_normalized",
    "head_softmax_confidence": "paper_head_softmax_confidence",
    "head_softmax_confidence_normalised": "paper_head_softmax_confidence_normalized",
    "head_importance": "paper_head_importance",
    "head_importance_normalised": "paper_head_importance_normalized",
    "synaptic_diversity": "paper_synaptic_diversity",
    "synaptic_diversity_normalised": "paper_synaptic_diversity_normalized",
    "synaptic_saliency": "paper_synaptic_saliency",
    "synaptic_saliency_normalised": "paper_synaptic_saliency_normalized",
    "activation_distance": "paper_activation_distance",
    "activation_distance_normalised": "paper_activation_distance_normalized",
    "jacob_cov": "paper_jacobian_score",
}
