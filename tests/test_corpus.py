"""Corpus loading, the vocabulary, batchify, and the embedded synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import PTB_DIR, require

from nas_engine.corpus import (
    EOS,
    CorpusError,
    batchify,
    embedded_corpus,
    first_batch,
    load_corpus,
)


def write(folder: Path, **splits: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in splits.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    return folder


def words(corpus, split: str) -> list[str]:
    return [corpus.vocab.words[i] for i in corpus.split(split).tolist()]


def one_line_error(fn, *args, match: str) -> str:
    with pytest.raises(CorpusError, match=match) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_folder_with_only_test_txt(tmp_path: Path) -> None:
    folder = write(tmp_path / "c", test="the cat sat\non the mat\n")
    corpus = load_corpus(folder, "test")
    assert set(corpus.splits) == {"test"}
    assert words(corpus, "test") == ["the", "cat", "sat", EOS, "on", "the", "mat", EOS]
    one_line_error(corpus.split, "train", match="no 'train' split")


def test_eos_after_every_line_and_spaces_ignored(tmp_path: Path) -> None:
    folder = write(tmp_path / "c", test=" a  b \nc\nd e f")
    corpus = load_corpus(folder, "test")
    assert words(corpus, "test") == ["a", "b", EOS, "c", EOS, "d", "e", "f", EOS]


def test_vocabulary_in_order_of_first_appearance(tmp_path: Path) -> None:
    # Written in another order than read: train, valid, test is the order that counts.
    folder = tmp_path / "c"
    write(folder, test="e c\n")
    write(folder, valid="b a d\n")
    write(folder, train="c a\nc\n")
    corpus = load_corpus(folder, "test")
    assert corpus.vocab.words == ["c", "a", EOS, "b", "d", "e"]
    assert corpus.vocab.index == {w: i for i, w in enumerate(corpus.vocab.words)}
    assert corpus.split("train").tolist() == [0, 1, 2, 0, 2]
    assert corpus.split("valid").tolist() == [3, 1, 4, 2]
    assert corpus.split("test").tolist() == [5, 0, 2]


def test_single_file_is_the_required_split(tmp_path: Path) -> None:
    file = tmp_path / "any.txt"
    file.write_text("x y\n")
    corpus = load_corpus(file, "valid")
    assert set(corpus.splits) == {"valid"}
    assert words(corpus, "valid") == ["x", "y", EOS]


def test_missing_folder(tmp_path: Path) -> None:
    one_line_error(load_corpus, tmp_path / "nope", "test", match="does not exist")


def test_missing_split(tmp_path: Path) -> None:
    folder = write(tmp_path / "c", train="a b\n", valid="c\n")
    one_line_error(load_corpus, folder, "test", match="has no test.txt")


@pytest.mark.parametrize("text", ["", "\n\n", "   \n \t \n"])
def test_empty_split(tmp_path: Path, text: str) -> None:
    folder = write(tmp_path / "c", test=text)
    one_line_error(load_corpus, folder, "test", match="is empty")


def test_empty_other_split_is_fine(tmp_path: Path) -> None:
    folder = write(tmp_path / "c", test="a b\n", valid="")
    corpus = load_corpus(folder, "test")
    assert corpus.split("valid").numel() == 0


def test_undecodable_file(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "test.txt").write_bytes(b"\xff\xfe\xfa not utf-8 \x80\n")
    one_line_error(load_corpus, folder, "test", match="cannot read")


def test_batchify_columns_are_contiguous() -> None:
    ids = torch.arange(23)
    data = batchify(ids, 4)
    assert data.shape == (5, 4)  # 23 // 4 steps, the remaining 3 tokens dropped
    for j in range(4):
        assert data[:, j].tolist() == list(range(j * 5, (j + 1) * 5))
    assert data.is_contiguous()
    assert batchify(torch.arange(12), 12).shape == (1, 12)
    with pytest.raises(CorpusError, match="too few"):
        batchify(torch.arange(3), 4)


def test_first_batch() -> None:
    ids = torch.arange(100)
    batch = first_batch(ids, batch_size=5, bptt=7)
    assert batch.shape == (7, 5)
    assert batch[:, 2].tolist() == list(range(40, 47))
    assert first_batch(ids, 5, 20).shape == (20, 5)
    with pytest.raises(CorpusError, match="too few for 21 steps"):
        first_batch(ids, 5, 21)


def test_embedded_corpus_is_deterministic_and_synthetic() -> None:
    a = embedded_corpus(vocab_size=200, tokens_per_split=(500, 300, 300))
    b = embedded_corpus(vocab_size=200, tokens_per_split=(500, 300, 300))
    assert "synthetic" in a.description
    assert len(a.vocab) == 200 and a.vocab.words[0] == EOS
    for split, n in zip(("train", "valid", "test"), (500, 300, 300), strict=True):
        assert torch.equal(a.split(split), b.split(split))
        assert a.split(split).numel() == n
        assert 0 <= a.split(split).min() and a.split(split).max() < 200
    # Sentences end: <eos> appears at roughly 1 in 20 tokens.
    eos_share = (a.split("train") == 0).float().mean().item()
    assert 0.01 < eos_share < 0.15
    assert not torch.equal(a.split("valid"), a.split("test"))


def test_default_embedded_corpus() -> None:
    corpus = embedded_corpus()
    assert {k: v.numel() for k, v in corpus.splits.items()} == {
        "train": 200_000,
        "valid": 20_000,
        "test": 20_000,
    }
    assert "synthetic" in corpus.description
    assert torch.equal(corpus.split("test")[:50], embedded_corpus().split("test")[:50])


def test_penn_treebank_token_counts() -> None:
    corpus = load_corpus(require(PTB_DIR), "test")
    # Mikolov's PTB: test 78,669 words + 3,761 line ends; valid 70,390 + 3,370.
    assert corpus.split("test").numel() == 82_430
    assert corpus.split("valid").numel() == 73_760
    assert set(corpus.splits) == {"valid", "test"}  # no train.txt in the shared data
    assert len(corpus.vocab) <= 10_000
    assert {"<unk>", "N", EOS} <= set(corpus.vocab.words)
    # Valid is read before test: its first line supplies the first words.
    first_line = (PTB_DIR / "valid.txt").read_text().splitlines()[0].split()
    assert corpus.vocab.words[:3] == first_line[:3]


def test_blank_lines_get_an_eos_like_the_benchmark_loader(tmp_path):
    # AWD-LSTM's loader (used by NAS-Bench-NLP) appends <eos> to every line, blank or not.
    (tmp_path / "test.txt").write_text("a b\n\nc\n")
    corpus = load_corpus(tmp_path, "test")
    words = [corpus.vocab.words[i] for i in corpus.split("test").tolist()]
    assert words == ["a", "b", "<eos>", "<eos>", "c", "<eos>"]
