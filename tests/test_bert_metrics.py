"""Transformer metrics on tiny encoders, against a by-hand forward and backward written
without the model's modules (functional ops on its parameter tensors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import token_corpus
from torch.nn import functional as F

from nas_engine.metrics import get_metric, metric_names
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from nas_engine.seeds import derived_seed
from search_spaces.bert import BertConfig, EncoderSizes, LayerConfig
from search_spaces.bert import probe as bert_probes
from search_spaces.bert.networks import ScoringProtocol
from search_spaces.bert.probe import BertProbe

HIDDEN, HEADS, FF, VOCAB, LENGTH, BATCH, SEED = 128, 2, 32, 20, 6, 3, 0
EPS = 1e-12


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, LENGTH), generator=torch.Generator().manual_seed(5))


def probe_for(layers: tuple[LayerConfig, ...], hidden: int = HIDDEN) -> BertProbe:
    config = BertConfig(hidden, layers)
    needs = {"param_count", "forward", "backward"}
    return BertProbe(config, EncoderSizes(VOCAB, LENGTH), tokens(), SEED, needs=needs)


def value(name: str, probe: BertProbe) -> float:
    out = get_metric(name, "bert").fn(probe)
    return float(getattr(out, "value", out))


def reference(probe: BertProbe, weighted: bool) -> dict:
    """One SA layer (SDP or WMA) by hand: the recorded tensors and the gradients."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in probe.model.named_parameters()}
    tok = probe.tokens
    x = p["embeddings.token.weight"][tok] + p["embeddings.position.weight"][:LENGTH]
    x = x + p["embeddings.segment.weight"][0]
    x = F.layer_norm(x, (HIDDEN,), p["embeddings.norm.weight"], p["embeddings.norm.bias"], EPS)
    pre = "layers.0."

    def lin(name: str, t: torch.Tensor, bias: bool = True) -> torch.Tensor:
        out = t @ p[pre + name + ".weight"].T
        return out + p[pre + name + ".bias"] if bias else out

    q, k, v = lin("mixing.query", x), lin("mixing.key", x), lin("mixing.value", x)
    projections = [q, k, v]
    if weighted:
        q = lin("mixing.query_weight", q, bias=False)
        projections.append(q)
    d = HIDDEN // HEADS
    heads = [slice(h * d, (h + 1) * d) for h in range(HEADS)]
    probs = torch.stack(
        [
            torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(d), dim=-1)
            for s in heads
        ],
        dim=1,
    )  # (B, n, T, T)
    attended = torch.cat([probs[:, i] @ v[..., s] for i, s in enumerate(heads)], dim=-1)
    x1 = x + lin("mixing_output", attended)
    x1 = F.layer_norm(
        x1, (HIDDEN,), p[pre + "mixing_norm.weight"], p[pre + "mixing_norm.bias"], EPS
    )
    h1 = F.gelu(lin("feed_forward.linears.0", x1))
    h2 = F.gelu(lin("feed_forward.linears.1", h1))
    y = x1 + lin("feed_forward.output", h2)
    y = F.layer_norm(y, (HIDDEN,), p[pre + "output_norm.weight"], p[pre + "output_norm.bias"], EPS)
    gen = torch.Generator().manual_seed(derived_seed(SEED, "bert-backward"))
    seed_grad = torch.randn(y.shape, generator=gen, dtype=y.dtype)
    mixing = ["mixing.query", "mixing.key", "mixing.value"] + (
        ["mixing.query_weight"] if weighted else []
    )
    ff = ["feed_forward.linears.0", "feed_forward.linears.1", "feed_forward.output"]
    wanted = [pre + n + ".weight" for n in mixing + ff] + ["embeddings.position.weight"]
    grads = dict(
        zip(wanted, torch.autograd.grad(y, [p[n] for n in wanted], seed_grad), strict=True)
    )
    return {
        "projections": [t.detach() for t in projections],
        "probs": probs.detach(),
        "activations": [h1.detach(), h2.detach()],
        "mixing": [(p[pre + n + ".weight"].detach(), grads[pre + n + ".weight"]) for n in mixing],
        "ff": [(p[pre + n + ".weight"].detach(), grads[pre + n + ".weight"]) for n in ff],
        "position_grad": grads["embeddings.position.weight"][:LENGTH],
        "y": y.detach(),
    }


def eig_score_numpy(rows: np.ndarray, k: float = 1e-5) -> float:
    lam = np.clip(np.linalg.eigvalsh(np.corrcoef(rows)), 0, None)
    return float(-np.sum(np.log(lam + k) + 1 / (lam + k)))


@pytest.mark.parametrize("weighted", [False, True])
def test_metrics_against_a_hand_computation(float64_default, weighted: bool) -> None:
    layer = LayerConfig("SA", "WMA" if weighted else "SDP", HEADS, FF, 2)
    probe = probe_for((layer,))
    ref = reference(probe, weighted)
    torch.testing.assert_close(probe.model(probe.tokens), ref["y"])
    n_proj = 4 if weighted else 3

    conf = sum(float(t.amax(dim=1).mean()) for t in ref["projections"])
    assert value("head_confidence", probe) == pytest.approx(conf, rel=1e-10)
    assert value("head_confidence_normalised", probe) == pytest.approx(conf / n_proj, rel=1e-10)

    soft = float(ref["probs"].amax(dim=1).mean())
    assert value("head_softmax_confidence", probe) == pytest.approx(soft, rel=1e-10)
    assert value("head_softmax_confidence_normalised", probe) == pytest.approx(soft, rel=1e-10)

    # NASWOT kernel sum in closed form: sum_ij [c_i.c_j + (1-c_i).(1-c_j)]
    #   = |sum_i c_i|^2 + |sum_i (1 - c_i)|^2 over the tokens i of the first sequence
    dist = 0.0
    for act in ref["activations"]:
        c = (act[0] > 0).double()
        dist += float((c.sum(0) ** 2).sum() + ((1 - c).sum(0) ** 2).sum())
    assert value("activation_distance", probe) == pytest.approx(dist, rel=1e-12)
    assert value("activation_distance_normalised", probe) == pytest.approx(dist / 2, rel=1e-12)

    importance = sum(float((w * g).abs().sum()) for w, g in ref["mixing"])  # all 128 outputs
    assert value("head_importance", probe) == pytest.approx(importance, rel=1e-8)
    assert value("head_importance_normalised", probe) == pytest.approx(
        importance / n_proj, rel=1e-8
    )

    diversity = sum(
        np.linalg.svd(w.numpy(), compute_uv=False).sum()
        * np.linalg.svd(g.numpy(), compute_uv=False).sum()
        for w, g in ref["mixing"]
    )
    assert value("synaptic_diversity", probe) == pytest.approx(diversity, rel=1e-8)
    assert value("synaptic_diversity_normalised", probe) == pytest.approx(
        diversity / n_proj, rel=1e-8
    )

    saliency = sum(float((w * g).abs().sum()) for w, g in ref["ff"])
    assert value("synaptic_saliency", probe) == pytest.approx(saliency, rel=1e-8)
    assert value("synaptic_saliency_normalised", probe) == pytest.approx(saliency / 3, rel=1e-8)

    jac = eig_score_numpy(ref["position_grad"].numpy())
    assert value("jacob_cov", probe) == pytest.approx(jac, rel=1e-6)
    assert importance > 0 and saliency > 0


def test_no_attention_means_zero_softmax_confidence() -> None:
    probe = probe_for((LayerConfig("LT", "DFT", 2, FF, 1), LayerConfig("DSC", 5, 2, FF, 1)), 16)
    assert value("head_softmax_confidence", probe) == 0.0
    assert value("head_softmax_confidence_normalised", probe) == 0.0
    # hidden 16: no token-mixing linear has 128 outputs, an empty sum
    assert value("head_importance", probe) == 0.0
    # projections (metrics.md): LT input projection; DSC query, value, key pointwise (its key
    # projection), not the kernel generator
    assert get_metric("head_confidence", "bert").fn(probe).details["head_confidence_terms"] == 4


def test_parameter_metrics() -> None:
    probe = probe_for((LayerConfig("LT", "DCT", 2, FF, 1),), 16)
    layer = (16 * 16 + 16) + (16 * FF + FF) + (FF * 16 + 16) + 4 * 16
    embeddings = VOCAB * 16 + LENGTH * 16 + 2 * 16 + 2 * 16
    assert value("nonembedding_params", probe) == layer
    assert value("params", probe) == layer + embeddings


def test_probe_leaves_no_hooks_and_no_grads() -> None:
    probe = probe_for((LayerConfig("SA", "SDP", 2, FF, 1), LayerConfig("DSC", 9, 2, FF, 3)), 16)
    for name in metric_names("bert"):
        value(name, probe)
    for module in probe.model.modules():
        assert not module._forward_hooks, module
    assert all(p.grad is None for p in probe.model.parameters())


def test_a_hook_is_removed_even_when_the_forward_fails() -> None:
    probe = probe_for((LayerConfig("SA", "SDP", 2, FF, 1),), 16)
    with pytest.raises(ValueError), bert_probes.recording(probe.model):
        probe.model(torch.zeros(1, LENGTH + 1, dtype=torch.long))  # too long
    assert not any(m._forward_hooks for m in probe.model.modules())


def test_a_gradient_of_ones_vanishes_below_the_last_layer_norm(float64_default) -> None:
    """Why the backward is seeded with a Gaussian tensor (bert_probes docstring)."""
    layers = (LayerConfig("SA", "SDP", 2, FF, 1),)
    normal = probe_for(layers, 16).backward.linears
    config = BertConfig(16, layers)
    protocol = ScoringProtocol(gradient_of_ones=True)
    ones = BertProbe(
        config, EncoderSizes(VOCAB, LENGTH), tokens(), SEED, needs={"backward"}, protocol=protocol
    ).backward.linears
    for a, b in zip(normal, ones, strict=True):
        assert float(b.grad.abs().max()) < 1e-12 * float(a.grad.abs().max()) + 1e-14


def test_same_seed_same_scores_other_seed_other_weights() -> None:
    layers = (LayerConfig("SA", "SDP", 2, FF, 1),)
    a, b = probe_for(layers, 16), probe_for(layers, 16)
    assert value("head_confidence", a) == value("head_confidence", b)
    c = BertProbe(BertConfig(16, layers), EncoderSizes(VOCAB, LENGTH), tokens(), SEED + 1)
    assert value("head_confidence", c) != value("head_confidence", a)


def test_scorer_scores_bert_configs() -> None:
    names = tuple(metric_names("bert"))
    setup = ScoringSetup(space="bert", metrics=names, batch_size=4, bptt=8)
    scorer = Scorer(setup, token_corpus(vocab_size=30))
    arch = {
        "hidden_size": 16,
        "encoder_layers": [
            {
                "operation_type": op,
                "operation_parameter": param,
                "num_operation_heads": 2,
                "feed_forward_dimension": 32,
                "num_feed_forward": 1,
            }
            for op, param in (("SA", "WMA"), ("LT", "DCT"), ("DSC", 9))
        ],
    }
    evaluation = scorer.score(Candidate("", arch))
    assert evaluation.status == "ok", evaluation.error
    assert set(evaluation.metrics) == set(names)
    assert all(math.isfinite(v) for v in evaluation.metrics.values())
    assert scorer.prober.tokens.shape == (4, 8)
    bad = scorer.score(Candidate("", {**arch, "hidden_size": 15}))
    assert bad.status == "failed" and "not divisible" in bad.error


def test_metrics_are_per_space() -> None:
    assert get_metric("params", "bert").space == "bert"
    assert get_metric("params", "rnn").space == "rnn"
    assert get_metric("params").space == "rnn"  # no space: the RNN one, as before
    assert "hidden_cov" not in metric_names("bert")
    assert "head_confidence" not in metric_names("rnn")
    with pytest.raises(KeyError, match="unknown metric 'hidden_cov'"):
        get_metric("hidden_cov", "bert")
    with pytest.raises(KeyError):
        Scorer(
            ScoringSetup(space="bert", metrics=("hidden_cov",), batch_size=2, bptt=4),
            token_corpus(),
        )
