"""Text corpora: the plain-text layout, a vocabulary, batchify, and an offline default.

Layout: a folder with ``train.txt``, ``valid.txt``, ``test.txt`` (any may be absent except the
split used), one sentence per line, tokens separated by spaces. As in the benchmark's data
code, every line ends with an ``<eos>`` token and the vocabulary lists words in order of first
appearance over train, valid, test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "valid", "test")
EOS = "<eos>"


class CorpusError(ValueError):
    """A corpus path that cannot be used; the message is one line for the user."""


@dataclass
class Vocabulary:
    words: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, word: str) -> int:
        if word not in self.index:
            self.index[word] = len(self.words)
            self.words.append(word)
        return self.index[word]

    def __len__(self) -> int:
        return len(self.words)


@dataclass
class Corpus:
    """Token ids per split and the shared vocabulary; ``description`` says what it is."""

    description: str
    vocab: Vocabulary
    splits: dict[str, torch.Tensor]

    def split(self, name: str) -> torch.Tensor:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise CorpusError(f"corpus has no {name!r} split (has: {have})")
        return self.splits[name]


def _tokenize_lines(lines: list[str], vocab: Vocabulary) -> torch.Tensor:
    ids = [vocab.add(w) for line in lines for w in (*line.split(), EOS)]
    return torch.tensor(ids, dtype=torch.long)


def load_corpus(path: str | Path, required_split: str) -> Corpus:
    """Read a corpus folder (or a single text file, used as ``required_split``)."""
    root = Path(path)
    if not root.exists():
        raise CorpusError(f"corpus path {str(root)!r} does not exist")
    if root.is_file():
        files = {required_split: root}
    else:
        files = {s: root / f"{s}.txt" for s in SPLITS if (root / f"{s}.txt").is_file()}
        if required_split not in files:
            raise CorpusError(f"corpus folder {str(root)!r} has no {required_split}.txt")
    vocab = Vocabulary()
    splits = {}
    for name, file in files.items():
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"cannot read {str(file)!r}: {exc}") from None
        # Blank lines stay: the benchmark's loader gives each one an <eos> (WikiText has many).
        lines = text.splitlines()
        if name == required_split and not text.strip():
            raise CorpusError(f"corpus file {str(file)!r} is empty")
        splits[name] = _tokenize_lines(lines, vocab)
    return Corpus(f"text corpus at {root}", vocab, splits)


def embedded_corpus(
    vocab_size: int = 10_000, tokens_per_split: tuple[int, int, int] = (200_000, 20_000, 20_000)
) -> Corpus:
    """A synthetic corpus generated offline: not natural language.

    Words ``w1 .. w{V-1}`` follow a Zipf(1.1) unigram law; each word prefers four successors
    (half of the tokens follow them), and sentences end with ``<eos>`` at about 1 in 20 tokens.
    Scoring an untrained network hardly depends on the text (random token ids rank cells as
    well as real text), so this is a sound default for search; it is learnable but is no
    substitute for real text when training.
    """
    rng = np.random.default_rng(20200611)
    ranks = np.arange(1, vocab_size)
    unigram = ranks**-1.1
    unigram /= unigram.sum()
    successors = rng.choice(ranks, size=(vocab_size, 4), p=unigram)
    vocab = Vocabulary()
    vocab.add(EOS)
    for r in ranks:
        vocab.add(f"w{r}")
    splits = {}
    for name, n in zip(SPLITS, tokens_per_split, strict=True):
        free = rng.choice(ranks, size=n, p=unigram)
        follow = rng.random(n) < 0.5
        which = rng.integers(0, 4, size=n)
        stop = rng.random(n) < 0.05
        ids = np.empty(n, dtype=np.int64)
        prev = 0
        for i in range(n):
            if stop[i]:
                tok = 0
            elif follow[i] and prev:
                tok = successors[prev, which[i]]
            else:
                tok = free[i]
            ids[i] = prev = tok
        splits[name] = torch.from_numpy(ids)
    description = (
        f"embedded synthetic corpus (Zipf-Markov token stream, {vocab_size:,} word types, "
        "generated offline; not natural text: pass --corpus DIR for real text)"
    )
    return Corpus(description, vocab, splits)


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(T, B): the stream cut into ``batch_size`` contiguous columns, remainder dropped."""
    steps = ids.numel() // batch_size
    if steps == 0:
        raise CorpusError(
            f"the split has {ids.numel()} tokens, too few for a batch of {batch_size} columns"
        )
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


def first_batch(
    ids: torch.Tensor, batch_size: int, bptt: int, targets: bool = False
) -> torch.Tensor:
    """The first ``bptt`` steps of the batchified stream: the scoring input (T, B). With
    ``targets``, one step more, (T + 1, B): rows 0..T-1 are the input, rows 1..T the next
    tokens the input predicts."""
    data = batchify(ids, batch_size)
    steps = bptt + 1 if targets else bptt
    if data.shape[0] < steps:
        what = f"{bptt} steps plus one target step" if targets else f"{bptt} steps"
        raise CorpusError(
            f"the split has {ids.numel()} tokens, too few for {what} x {batch_size} columns"
        )
    return data[:steps]


def windows(
    ids: torch.Tensor, batch_size: int, bptt: int, count: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` consecutive (inputs, targets) minibatches of the batchified stream, each
    (T, B): window i reads rows i*T .. (i+1)*T - 1 and predicts rows i*T + 1 .. (i+1)*T. The
    first window's input is :func:`first_batch`."""
    data = batchify(ids, batch_size)
    need = count * bptt + 1
    if data.shape[0] < need:
        raise CorpusError(
            f"the split has {ids.numel()} tokens ({data.shape[0]} steps of {batch_size} "
            f"columns), too few for {count} windows of {bptt} steps plus one target step "
            f"({need} steps)"
        )
    return [
        (data[i * bptt : (i + 1) * bptt], data[i * bptt + 1 : (i + 1) * bptt + 1])
        for i in range(count)
    ]
