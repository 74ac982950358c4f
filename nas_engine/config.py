"""The typed configuration of a search: CLI -> SearchConfig -> engine."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import ConfigError
from .executors.base import EXECUTORS
from .fitness import Fitness
from .health import DEFAULT_STABILITY_THRESHOLD
from .plugins import load_plugins
from .scoring import ScoringSetup
from .spaces import get_space, load_space

# The regret simulation's selected design (experiments/regret_simulation.py, docs): the
# confirmed architecture with the best blend 0.25 * fitness rank + 0.75 * loss rank.
DEFAULT_ANSWER_BLEND = 0.25
# The longest --eval-timeout: the in-process limit is a POSIX interval timer, which overflows
# the platform's time_t near 1e10 s; a limit of 115 days is no limit in practice.
MAX_EVAL_TIMEOUT = 1e7


@dataclass(frozen=True)
class FastSizes:
    """The fast mode's sizes (``--fast``): chosen with ``experiments/fast_mode.py``, whose
    trade-off curve over sizes (seconds per architecture against Kendall tau with trained
    loss on the NAS-Bench-NLP logs) they sit on; the layer count stays the benchmark's."""

    embedding_size: int = 48
    hidden_size: int = 64
    batch_size: int = 25
    bptt: int = 35


FAST_SIZES = FastSizes()


# The network sizes a space may take (its SearchSpace.size_defaults names them).
SIZE_SETTINGS = ("embedding_size", "hidden_size", "layers", "init_gain")

# Settings that change how or where a run executes, or what happens after it, but not which
# architectures it evaluates and what they score: a run may be resumed with other values.
EXECUTION_SETTINGS = (
    "out",
    "top_k",
    "executor",
    "ray_address",
    "workers",
    "gpus_per_worker",
    "eval_timeout",
    "worker_batch",
    "cuda_graphs",
    "cell_batch",
    "resume",
    "confirm_top",
    "confirm_steps",
    "confirm_epochs",
    "confirm_corpus",
    "answer_blend",
    "report",
    "threads",
)


@dataclass(frozen=True)
class SearchConfig:
    space: str = "rnn"
    restrict: str | None = None  # bert: allowed values per field (search_spaces.bert.restriction)
    # The fitness spec; None: the space's default (SearchSpace.default_fitness).
    fitness: str | None = None
    strategy: str = "evolution"
    budget: int = 100
    time_budget: float | None = None
    population: int = 20
    tournament: int = 5
    seed: int = 0
    device: str = "cpu"
    top_k: int = 10
    out: str | None = None
    corpus: str | None = None
    split: str = "test"
    # The network sizes a space takes (SearchSpace.size_defaults); None: the space's default,
    # filled in when the config is made. A space that does not take one refuses it.
    embedding_size: int | None = None
    hidden_size: int | None = None
    layers: int | None = None
    batch_size: int = 50
    bptt: int = 70
    init_gain: float | None = None
    # The network family each architecture is built as (SearchSpace.networks; bert:
    # as-trained, literal, paper-notebook); None: the space's default.
    network: str | None = None
    metrics: tuple[str, ...] = field(default_factory=tuple)
    executor: str = "inprocess"
    ray_address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    eval_timeout: float | None = None
    worker_batch: int = 1
    cuda_graphs: bool = False
    cell_batch: bool = False
    resume: bool = False
    confirm_top: int = 0
    confirm_steps: int | None = None
    confirm_epochs: float | None = None
    confirm_corpus: str | None = None
    # The trained proxy (metric trained_loss): steps or epochs per architecture, train split.
    proxy_steps: int | None = None
    proxy_epochs: float | None = None
    proxy_train_split: str = "train"
    # The stability guard (nas_engine.health): a result whose stress growth exceeds the
    # threshold stays ok, flagged, and is kept out of the ranking, the parents and the answer.
    stability_guard: bool = True
    stability_threshold: float = DEFAULT_STABILITY_THRESHOLD
    # Multi-objective search (NSGA-II): metrics, each with its direction or METRIC:min/max.
    objectives: tuple[str, ...] = field(default_factory=tuple)
    # The hypervolume's reference point, one value per objective in the metric's own units;
    # None: fixed from the first `population` ranked results (nas_engine.pareto).
    reference_point: tuple[float, ...] | None = None
    # A hard constraint: an architecture with more parameters is failed, never ranked.
    max_params: int | None = None
    # With --confirm-top: the answer's blend weight of the fitness rank (the rest: the rank
    # of the confirmed loss); the regret simulation's choice.
    answer_blend: float = DEFAULT_ANSWER_BLEND
    # Modules imported first, here and in every worker: they register metrics or spaces.
    plugins: tuple[str, ...] = field(default_factory=tuple)
    # Write OUT/report.html and OUT/report.md when the run ends (finished or stopped).
    report: bool = True
    # In-process scoring: torch's threads; None: the cores other processes leave idle
    # (nas_engine.executors.cpu_load.ThreadPolicy). Ray workers use one each.
    threads: int | None = None

    def __post_init__(self) -> None:
        # Each size the space takes and the user left unset gets the space's default (the one
        # place it is written); an unknown space is left for validate() to report.
        try:
            load_plugins(self.plugins)
            defaults = load_space(self.space).size_defaults
        except (ConfigError, KeyError, TypeError):
            return
        for name, value in defaults.items():
            if getattr(self, name, value) is None:
                object.__setattr__(self, name, value)
        if self.fitness is None and not self.objectives:
            object.__setattr__(self, "fitness", load_space(self.space).default_fitness)
        if self.network is None and load_space(self.space).default_network is not None:
            object.__setattr__(self, "network", load_space(self.space).default_network)

    def validate(self) -> None:
        load_plugins(self.plugins)
        try:
            space = load_space(self.space)
        except KeyError as exc:
            raise ConfigError(exc.args[0]) from None
        self._validate_sizes(space.size_defaults)
        if self.network is not None and self.network not in space.networks:
            known = ", ".join(space.networks) or "none: one network per architecture"
            raise ConfigError(f"--network {self.network}: the {self.space} space has {known}")
        positive = {
            "budget": self.budget,
            "population": self.population,
            "tournament": self.tournament,
            "top_k": self.top_k,
            **{name: getattr(self, name) for name in SIZE_SETTINGS if name != "init_gain"},
            "batch_size": self.batch_size,
            "bptt": self.bptt,
        }
        positive = {k: v for k, v in positive.items() if k in space.size_defaults or v is not None}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name.replace('_', '-')} must be an integer >= 1, got {value!r}"
                )
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise ConfigError(f"seed must be an integer in [0, 2^64), got {self.seed!r}")
        if self.bptt < 2:
            raise ConfigError(
                f"bptt must be at least 2, got {self.bptt}: every score compares the states of "
                "several steps (with one step every cell scores the same)"
            )
        if self.time_budget is not None and self.time_budget <= 0:
            raise ConfigError(f"time budget must be > 0 seconds, got {self.time_budget}")
        if self.strategy == "evolution" and self.population < 2:
            raise ConfigError("population must be at least 2 for evolution")
        if (
            self.tournament > self.population
            and self.strategy == "evolution"
            and not self.objectives
        ):
            raise ConfigError("tournament size must not exceed the population")
        if self.batch_size < 2:
            raise ConfigError("batch size must be at least 2 (correlations need several rows)")
        gain = self.init_gain
        if gain is not None and not (isinstance(gain, (int, float)) and 0 < gain < math.inf):
            raise ConfigError(f"init-gain must be a finite number > 0, got {gain!r}")
        self._validate_execution()
        self._validate_guard_and_objectives()
        self._validate_restriction()
        self._validate_proxy()
        if self.device not in ("cpu", "cuda", "auto") and not self.device.startswith("cuda:"):
            raise ConfigError(f"unknown device {self.device!r} (known: cpu, cuda, auto)")

    def _validate_sizes(self, taken: Mapping[str, object]) -> None:
        given = [
            name for name in SIZE_SETTINGS if name not in taken and getattr(self, name) is not None
        ]
        if given:
            options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise ConfigError(
                f"{options}: the {self.space} space does not take "
                f"{'it' if len(given) == 1 else 'them'} (a {self.space} architecture carries its "
                "own sizes)"
            )

    def _validate_guard_and_objectives(self) -> None:
        threshold = self.stability_threshold
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            raise ConfigError(f"stability threshold must be a finite number, got {threshold!r}")
        blend = self.answer_blend
        if not (isinstance(blend, (int, float)) and 0 <= blend < math.inf):
            raise ConfigError(f"answer blend must be a finite number >= 0, got {blend!r}")
        if self.max_params is not None and (
            not isinstance(self.max_params, int) or self.max_params < 1
        ):
            raise ConfigError(f"max-params must be an integer >= 1, got {self.max_params!r}")
        if self.reference_point is not None:
            if not self.objectives:
                raise ConfigError("--reference-point sets the hypervolume of --objectives")
            if len(self.reference_point) != len(self.objectives):
                raise ConfigError(
                    f"--reference-point has {len(self.reference_point)} values for "
                    f"{len(self.objectives)} objectives"
                )
            if not all(math.isfinite(v) for v in self.reference_point):
                raise ConfigError("--reference-point values must be finite numbers")
        if self.strategy == "nsga2" and not self.objectives:
            raise ConfigError("--strategy nsga2 needs --objectives METRIC,METRIC[,...]")
        if self.objectives and self.strategy in ("evolution", "nsga2") and self.population < 4:
            raise ConfigError("NSGA-II needs a population of at least 4")

    def _validate_proxy(self) -> None:
        """The trained proxy's settings, and a corpus folder it can train on (checked by file
        name here, so the user hears of it before anything runs)."""
        if self.proxy_steps is not None and self.proxy_epochs is not None:
            raise ConfigError("give --proxy-steps or --proxy-epochs, not both")
        if self.proxy_steps is not None and (
            not isinstance(self.proxy_steps, int) or self.proxy_steps < 1
        ):
            raise ConfigError(f"proxy-steps must be an integer >= 1, got {self.proxy_steps!r}")
        if self.proxy_epochs is not None and not self.proxy_epochs > 0:
            raise ConfigError(f"proxy-epochs must be > 0, got {self.proxy_epochs!r}")
        if "trained_loss" not in self.scored_metrics():
            asked = (self.proxy_steps, self.proxy_epochs) != (None, None)
            if asked or self.proxy_train_split != "train":
                raise ConfigError(
                    "--proxy-steps, --proxy-epochs and --proxy-train-split set the trained_loss "
                    "metric, which neither --fitness nor --metrics names"
                )
            return
        if self.proxy_train_split not in ("train", "valid"):
            raise ConfigError(
                f"--proxy-train-split must be train or valid, got {self.proxy_train_split!r}"
            )
        if self.corpus is None:
            return  # the embedded corpus has every split
        root = Path(self.corpus)
        if root.is_file():
            raise ConfigError(
                "trained_loss trains on a corpus folder's train (or valid) split; "
                f"{str(root)!r} is a single file"
            )
        split = self.proxy_train_split
        if root.is_dir() and not (root / f"{split}.txt").is_file():
            hint = (
                "; pass --proxy-train-split valid to train on the first 90% of valid.txt and "
                "validate on the rest"
                if split == "train" and (root / "valid.txt").is_file()
                else ""
            )
            raise ConfigError(
                f"trained_loss trains on the {split} split: {str(root)!r} has no {split}.txt{hint}"
            )
        if root.is_dir() and not (root / "valid.txt").is_file():
            raise ConfigError(f"trained_loss validates on valid.txt: {str(root)!r} has none")

    def _validate_restriction(self) -> None:
        if not self.restrict:
            return
        try:
            get_space(self.space, self.restrict)
        except KeyError:
            return  # an unknown space is reported as such by the engine
        except ValueError as exc:  # a restriction that cannot be parsed, or the wrong space
            raise ConfigError(f"--restrict: {exc}") from None

    def _validate_execution(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r} (known: {', '.join(EXECUTORS)})")
        if self.executor != "ray":
            for name in ("ray_address", "workers"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"--{name.replace('_', '-')} needs --executor ray")
            if self.gpus_per_worker:
                raise ConfigError("--gpus-per-worker needs --executor ray")
        if self.threads is not None:
            if not isinstance(self.threads, int) or self.threads < 1:
                raise ConfigError(f"threads must be an integer >= 1, got {self.threads!r}")
            if self.executor != "inprocess":
                raise ConfigError("--threads sets in-process scoring (a Ray worker uses one)")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"workers must be an integer >= 1, got {self.workers!r}")
        if not 0 <= self.gpus_per_worker <= 64:
            raise ConfigError(f"gpus per worker must be in [0, 64], got {self.gpus_per_worker}")
        if self.eval_timeout is not None and not 0 < self.eval_timeout <= MAX_EVAL_TIMEOUT:
            raise ConfigError(
                f"eval timeout must be > 0 and at most {MAX_EVAL_TIMEOUT:.0e} seconds, got "
                f"{self.eval_timeout}"
            )
        if not isinstance(self.worker_batch, int) or self.worker_batch < 1:
            raise ConfigError(f"worker batch must be an integer >= 1, got {self.worker_batch!r}")
        if self.worker_batch > 1:
            if self.eval_timeout is not None:
                raise ConfigError(
                    "--worker-batch with --eval-timeout: a batch has no per-architecture "
                    "time limit; give one of them"
                )
        features = load_space(self.space).features
        if self.cuda_graphs and ("cuda_graphs" not in features or self.device == "cpu"):
            raise ConfigError(
                "--cuda-graphs records a network's steps on a GPU: it needs a space that has "
                f"them (the {self.space} space "
                f"{'does' if 'cuda_graphs' in features else 'has none'}) "
                "and --device cuda (or auto)"
            )
        if self.cell_batch and ("cell_batch" not in features or self.worker_batch < 2):
            raise ConfigError(
                "--cell-batch runs the first layer of a batch's networks together: it needs a "
                f"space that can (the {self.space} space "
                f"{'can' if 'cell_batch' in features else 'cannot'}) "
                "and --worker-batch N with N >= 2"
            )
        if not isinstance(self.confirm_top, int) or self.confirm_top < 0:
            raise ConfigError(f"confirm-top must be an integer >= 0, got {self.confirm_top!r}")
        if self.confirm_steps is not None and self.confirm_epochs is not None:
            raise ConfigError("give --confirm-steps or --confirm-epochs, not both")
        if self.confirm_steps is not None and self.confirm_steps < 1:
            raise ConfigError(f"confirm-steps must be >= 1, got {self.confirm_steps}")
        if self.confirm_epochs is not None and self.confirm_epochs <= 0:
            raise ConfigError(f"confirm-epochs must be > 0, got {self.confirm_epochs}")

    @cached_property
    def parsed_fitness(self) -> Fitness:
        """The fitness, parsed once (the spec, or the objectives) into the one object every
        consumer receives. Raises :class:`ConfigError` for a bad spec or an unknown metric."""
        load_plugins(self.plugins)
        if self.objectives:
            return Fitness.from_objectives(self.objectives, self.space)
        return Fitness.parse(self.fitness, self.space)

    def fitness_metrics(self) -> tuple[str, ...]:
        """The metrics of the fitness (``a:2+b`` -> ``('a', 'b')``), or of the objectives."""
        return tuple(self.parsed_fitness.metric_names)

    def scored_metrics(self) -> tuple[str, ...]:
        """Every fitness component first, then any extra metrics, without repeats."""
        return tuple(dict.fromkeys((*self.required_metrics(), *self.metrics)))

    def scoring_setup(self) -> ScoringSetup:
        return ScoringSetup(
            space=self.space,
            metrics=self.scored_metrics(),
            embedding_size=self.embedding_size,
            hidden_size=self.hidden_size,
            num_layers=self.layers,
            batch_size=self.batch_size,
            bptt=self.bptt,
            init_gain=self.init_gain,
            network=self.network,
            cuda_graphs=self.cuda_graphs,
            cell_batch=self.cell_batch,
            corpus=self.corpus,
            split=self.split,
            seed=self.seed,
            device=self.device,
            proxy_steps=self.proxy_steps,
            proxy_epochs=self.proxy_epochs,
            proxy_train_split=self.proxy_train_split,
            health_check=True,
            required_metrics=self.required_metrics(),
            plugins=self.plugins,
            plugin_paths=load_plugins(self.plugins),
        )

    def required_metrics(self) -> tuple[str, ...]:
        """The metrics a result cannot do without: the fitness components (or the objectives)
        and, with --max-params, the parameter count."""
        names = [*self.fitness_metrics()]
        return tuple(dict.fromkeys(names + (["params"] if self.max_params is not None else [])))

    def identity(self) -> dict:
        """The settings that define a run's results (a folder holds one such run)."""
        data = asdict(self)
        for not_identity in EXECUTION_SETTINGS:
            data.pop(not_identity)
        data["metrics"] = list(self.metrics)
        data["plugins"] = list(self.plugins)
        data["objectives"] = list(self.objectives)
        if self.reference_point is not None:
            data["reference_point"] = list(self.reference_point)
        return data
