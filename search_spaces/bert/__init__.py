"""The NAS-Bench-BERT space: configurations, restriction, generator, the encoder model, its
probe and metrics. Importing the package registers the space (:class:`BertSpace`) and its
metrics."""

from __future__ import annotations

from . import metrics as _metrics  # noqa: F401  (registers the space's metrics)
from .config import BertConfig, BertConfigError, LayerConfig
from .model import BertEncoder, EncoderSizes, count_nonembedding_parameters
from .restriction import Restriction, RestrictionError, parse_restriction, preset_names
from .space import BertSpace

__all__ = [
    "BertConfig",
    "BertConfigError",
    "BertEncoder",
    "BertSpace",
    "EncoderSizes",
    "LayerConfig",
    "Restriction",
    "RestrictionError",
    "count_nonembedding_parameters",
    "parse_restriction",
    "preset_names",
]
