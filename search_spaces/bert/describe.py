"""NAS-Bench-BERT configurations a person can read: one line per configuration.

Format of :func:`layer_list`::

    HIDDEN x LAYERS: LAYER, LAYER, ...
    LAYER = OP:PARAM/{heads}h/FF{dim}x{count}

``OP:PARAM`` is the token-mixing operation as :attr:`LayerConfig.operation` writes it
(``SA:SDP``, ``SA:WMA``, ``LT:DFT``, ``LT:DCT``, ``DSC:5``, ``DSC:9``), ``{heads}h`` its
number of heads, ``FF{dim}x{count}`` the feed-forward stack (``count`` layers of width
``dim``). Layers are listed from the embedding up. A run of ``n >= 2`` identical consecutive
layers is written once as ``n x (LAYER)`` (``collapse=False`` lists every layer), so::

    256 x 4: 4 x (SA:SDP/4h/FF1024x1)
    128 x 4: SA:SDP/2h/FF512x3, 2 x (LT:DFT/2h/FF512x1), DSC:9/4h/FF1024x1

The leading ``HIDDEN x LAYERS`` always counts every layer, collapsed or not.
"""

from __future__ import annotations

from itertools import groupby

from .config import BertConfig, LayerConfig


def layer_text(layer: LayerConfig) -> str:
    """One layer, e.g. ``SA:SDP/4h/FF1024x3``."""
    return (
        f"{layer.operation}/{layer.num_operation_heads}h/"
        f"FF{layer.feed_forward_dimension}x{layer.num_feed_forward}"
    )


def layer_list(config: BertConfig, *, collapse: bool = True) -> str:
    """The configuration on one line: ``256 x 4: SA:SDP/4h/FF1024x3, ...``, runs of
    identical layers as ``3 x (...)`` unless ``collapse=False`` (see the module docstring)."""
    parts = []
    for text, run in groupby(layer_text(layer) for layer in config.layers):
        n = len(list(run))
        if collapse and n > 1:
            parts.append(f"{n} x ({text})")
        else:
            parts.extend([text] * n)
    return f"{config.hidden_size} x {config.num_layers}: {', '.join(parts)}"
