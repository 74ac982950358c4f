"""Search spaces: the interface (:class:`SearchSpace`) and the registry."""

from .base import Probe, Prober, SearchSpace, Trainer
from .registry import (
    BUILTIN_SPACES,
    get_space,
    load_all_spaces,
    load_space,
    register_space,
    space_names,
)

__all__ = [
    "BUILTIN_SPACES",
    "Probe",
    "Prober",
    "SearchSpace",
    "Trainer",
    "get_space",
    "load_all_spaces",
    "load_space",
    "register_space",
    "space_names",
]
