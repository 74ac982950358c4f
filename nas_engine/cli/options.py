"""What every command line shares: one-line errors with exit code 2, the exit codes, number
types, and the option groups of more than one command."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..config import SearchConfig
from ..spaces import load_all_spaces, load_space, space_names

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process ended by it


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _space_defaults(name: str) -> str:
    """Each space's default for size ``name``, as help text reads it."""
    load_all_spaces()
    known = [
        f"{space}: {load_space(space).size_defaults[name]}"
        for space in space_names()
        if name in load_space(space).size_defaults
    ]
    return f" (default: the space's; {', '.join(known)})" if known else ""


def add_model_options(parser: argparse.ArgumentParser, defaults_from_logs: bool = False) -> None:
    """The network sizes a space takes (None: the space's default) and the scoring input."""
    d = SearchConfig()
    group = parser.add_argument_group("model and input sizes")

    def note(name: str) -> str:
        return " (default: the log's value)" if defaults_from_logs else _space_defaults(name)

    add_size_options(group, note)
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=d.batch_size,
        help="sequences in the scoring batch, B (default: %(default)s)",
    )
    group.add_argument(
        "--bptt",
        type=positive_int,
        default=d.bptt,
        help="steps in the scoring batch, T (default: %(default)s)",
    )
    group.add_argument(
        "--init-gain",
        type=positive_float,
        default=None,
        metavar="G",
        help="scale of the RNN cells' initial weights when scoring, uniform(-G/sqrt(H), "
        "G/sqrt(H)); 1 is the benchmark's initialisation"
        + _space_defaults("init_gain")
        + "; "
        + (
            "each logged cell is scored at this scale and correlated with its trained loss"
            if defaults_from_logs
            else "confirmation training starts from the benchmark's"
        ),
    )


def add_size_options(group: argparse._ActionsContainer, note=None) -> None:
    """--embedding-size, --hidden-size, --layers: the network sizes a space may take (None:
    the space's default), for every command that builds networks."""
    note = note or _space_defaults
    group.add_argument(
        "--embedding-size",
        type=positive_int,
        default=None,
        help="embedding size E" + note("embedding_size"),
    )
    group.add_argument(
        "--hidden-size", type=positive_int, default=None, help="hidden size H" + note("hidden_size")
    )
    group.add_argument(
        "--layers", type=positive_int, default=None, help="number of layers" + note("layers")
    )
