"""The one interface every search space implements, and the trainer a space may offer.

The engine goes through this interface for everything that depends on the space: drawing,
varying, checking and identifying architectures, building and probing the network, the sizes
it takes, training it, and showing it to a person. A space package (``search_spaces.rnn``,
``search_spaces.bert``, a plugin) registers its class with
:func:`nas_engine.spaces.register_space` and its metrics with
:func:`nas_engine.metrics.register`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..corpus import Corpus
    from ..scoring import Scorer, ScoringSetup

Arch = TypeVar("Arch")


class Probe(Protocol):
    """One architecture's untrained network and its input, with the passes its metrics read
    (each metric function takes the probe of its space)."""


class Prober(Protocol):
    """Made once per scorer: builds the space's input once, then one probe per architecture."""

    def probe(self, arch: Any) -> Probe: ...


@dataclass(frozen=True)
class Trainer:
    """How a space trains one of its architectures briefly (confirmation, ``nas_engine.train``).

    Every function is a top-level, picklable function, so that a Ray worker can run it:
    ``recipe(**settings)`` makes the training settings (raising
    :class:`~nas_engine.errors.TrainingConfigError`); ``prepare_data(corpus, recipe)`` the
    training data; ``sizes(data, sizes)`` the model sizes for that data from the sizes a user
    chose; ``train(arch_record, sizes, data, recipe, **options)`` the outcome, with
    ``to_dict()``, ``ok``, ``valid_loss``, ``test_loss``."""

    recipe: Callable[..., Any]
    prepare_data: Callable[[Corpus, Any], Any]
    sizes: Callable[[Any, Mapping[str, Any]], Any]
    train: Callable[..., Any]


class SearchSpace(ABC, Generic[Arch]):
    """A family of architectures: how to draw, vary, check, identify, build, probe, train and
    show them."""

    name: ClassVar[str]
    # The network sizes a user may set (SearchConfig's embedding_size, hidden_size, layers,
    # init_gain), with their defaults: the one place each default is written. Empty: an
    # architecture of the space carries its own sizes, and the space refuses them.
    size_defaults: ClassVar[Mapping[str, Any]] = {}
    # Scoring options the space implements: "cuda_graphs", "cell_batch".
    features: ClassVar[frozenset[str]] = frozenset()
    # The fitness a search of the space uses when none is given.
    default_fitness: ClassVar[str] = "params"
    # The network families an architecture may be built as (--network), and the default;
    # empty: one network per architecture.
    networks: ClassVar[tuple[str, ...]] = ()
    default_network: ClassVar[str | None] = None
    # Whether ``get_space(name, restriction)`` may narrow the space.
    restrictable: ClassVar[bool] = False
    # The space's trainer, or None: "no trainer" (confirmation is then refused).
    trainer: ClassVar[Trainer | None] = None
    # A Scorer subclass with the space's own batch scoring, or None for the plain Scorer.
    scorer_class: ClassVar[type[Scorer] | None] = None

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture from the space's sampling distribution."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> tuple[Arch, str]:
        """A valid child that differs from ``arch``, and the name of the change made."""

    @abstractmethod
    def validate(self, data: Any) -> Arch:
        """Parse a JSON-able description (or JSON text); raise ``ValueError`` naming the fault."""

    @abstractmethod
    def key(self, arch: Arch) -> str:
        """Identifier of the architecture's canonical form: equal archs, equal keys."""

    @abstractmethod
    def to_record(self, arch: Arch) -> dict:
        """The canonical, JSON-able description (``validate`` reads it back)."""

    @abstractmethod
    def distance(self, a: Arch, b: Arch) -> float:
        """0 for the same architecture, growing with structural difference, at most 1."""

    @abstractmethod
    def build(self, arch: Arch, sizes: Any) -> nn.Module:
        """The untrained network for ``arch`` at the given sizes (seed torch first)."""

    @abstractmethod
    def presets(self) -> dict[str, Arch]:
        """Named, well-known architectures of the space."""

    @abstractmethod
    def prober(
        self, setup: ScoringSetup, corpus: Corpus, device: torch.device, needs: frozenset[str]
    ) -> Prober:
        """The prober of a scorer: its input built once from the setup and the corpus, its
        probes planned for ``needs`` (the union of the scored metrics' needs)."""

    def check_need(self, need: str) -> None:
        """Raise ValueError unless ``need`` names a pass of the space's probe (checked when
        a metric is registered)."""

    def check_setup(self, setup: ScoringSetup, needs: frozenset[str]) -> None:
        """Raise ConfigError (one line) for a scoring setup the space cannot honour: a size it
        does not take, a metric that needs a deeper model, an option for another space."""
        for feature in ("cuda_graphs", "cell_batch"):
            if getattr(setup, feature) and feature not in self.features:
                raise ConfigError(f"{feature}: the {self.name} space does not implement it")

    def health(self, probe: Probe, details: dict) -> str | None:
        """Why the probed network is degenerate, or None (recording what it measured in
        ``details``); spaces without a health rule accept every network."""
        return None

    def describe(self, arch: Arch) -> str:
        """The architecture in one line a person can read."""
        return self.key(arch)

    def draw(self, arch: Arch, path: Path) -> bool:
        """Draw the architecture as a picture at ``path`` (PNG); False where the space has
        no drawing."""
        return False
