"""The BERT encoder: each token-mixing operation's shape, that it mixes tokens (or stays
local where it is local by design), the transforms against numpy/scipy, and parameter
counts against hand counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from nas_engine.parameters import count_parameters
from search_spaces.bert import (
    BertConfig,
    BertEncoder,
    EncoderSizes,
    LayerConfig,
    count_nonembedding_parameters,
)
from search_spaces.bert.model import dct2, token_mixing

H = 16
OPS = [("SA", "SDP"), ("SA", "WMA"), ("LT", "DFT"), ("LT", "DCT"), ("DSC", 5), ("DSC", 9)]


def mixing(op: str, param, heads: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    module = token_mixing(H, LayerConfig(op, param, heads, 32, 1))
    for p in module.parameters():  # weights large enough that mixing is far above rounding
        torch.nn.init.normal_(p, 0.0, 0.5)
    return module.double()


@pytest.mark.parametrize(("op", "param"), OPS)
def test_operation_shape_and_token_mixing(op: str, param) -> None:
    module = mixing(op, param)
    gen = torch.Generator().manual_seed(1)
    length = 12
    x = torch.randn(3, length, H, generator=gen, dtype=torch.float64)
    y = module(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 0] += torch.randn(3, H, generator=gen, dtype=torch.float64)  # change position 0 only
    moved = (module(x2) - y).abs().amax(dim=(0, 2))  # per position
    if op == "DSC":
        radius = int(param) // 2  # local by design: positions within (k - 1) / 2 of 0
        assert (moved[1 : radius + 1] > 1e-6).all()
        assert (moved[radius + 1 :] == 0).all()
    else:
        assert (moved[1:] > 1e-6).all(), moved


def test_mixing_does_not_leak_across_sequences() -> None:
    for op, param in OPS:
        module = mixing(op, param)
        x = torch.randn(2, 10, H, dtype=torch.float64)
        x2 = x.clone()
        x2[1] += 1.0
        assert torch.equal(module(x)[0], module(x2)[0]), op


def test_dct_matches_scipy() -> None:
    x = np.random.default_rng(0).normal(size=(3, 7, 6))
    for axis in (1, 2):
        ours = dct2(torch.from_numpy(x), dim=axis).numpy()
        np.testing.assert_allclose(ours, scipy.fft.dct(x, type=2, axis=axis), atol=1e-12)
    # by hand, one length-3 vector: y_k = 2 sum_n x_n cos(pi k (2n + 1) / 6)
    v = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    by_hand = [
        2 * sum(v[n] * math.cos(math.pi * k * (2 * n + 1) / 6) for n in range(3)) for k in range(3)
    ]
    np.testing.assert_allclose(dct2(v[None], dim=1)[0].numpy(), by_hand, atol=1e-12)


def test_lt_operations_against_numpy_per_head() -> None:
    for param in ("DFT", "DCT"):
        module = mixing("LT", param, heads=2)
        x = torch.randn(2, 5, H, dtype=torch.float64)
        proj = module.projection(x).detach().numpy().reshape(2, 5, 2, H // 2)  # (B, T, n, d)
        if param == "DFT":
            ref = np.fft.fft2(proj, axes=(1, 3)).real
        else:
            ref = scipy.fft.dctn(proj, type=2, axes=(1, 3))
        np.testing.assert_allclose(module(x).detach().numpy(), ref.reshape(2, 5, H), atol=1e-10)


def test_sdp_attention_against_a_direct_computation() -> None:
    module = mixing("SA", "SDP", heads=2)
    x = torch.randn(1, 4, H, dtype=torch.float64)
    q, k, v = (lin(x)[0].detach().numpy() for lin in (module.query, module.key, module.value))
    d = H // 2
    out = np.zeros((4, H))
    for h in range(2):
        s = q[:, h * d : (h + 1) * d] @ k[:, h * d : (h + 1) * d].T / np.sqrt(d)
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        out[:, h * d : (h + 1) * d] = p @ v[:, h * d : (h + 1) * d]
    np.testing.assert_allclose(module(x)[0].detach().numpy(), out, atol=1e-12)


def by_hand_count(config: dict, vocab: int, length: int) -> tuple[int, int]:
    """Independent count: (all parameters, non-embedding parameters)."""
    h = config["hidden"]
    emb = vocab * h + length * h + 2 * h + 2 * h  # token, position, segment, LayerNorm
    total = 0
    for op, param, heads, f, depth in config["layers"]:
        lin = h * h + h
        if op == "SA":
            mix = 3 * lin + (h * h if param == "WMA" else 0) + lin  # q, k, v (+W), output
        elif op == "LT":
            mix = lin  # input projection, no output projection
        else:  # q, v, depthwise k x h (no bias), pointwise, kernel generator, output
            mix = 2 * lin + param * h + lin + (h * heads * param + heads * param) + lin
        ff = (h * f + f) + (depth - 1) * (f * f + f) + (f * h + h)
        total += mix + ff + 2 * 2 * h  # two LayerNorms
    return emb + total, total


@pytest.mark.parametrize(
    "spec",
    [
        {"hidden": 128, "layers": [("SA", "WMA", 4, 512, 3), ("LT", "DFT", 2, 1024, 1)]},
        {
            "hidden": 32,
            "layers": [
                ("DSC", 9, 4, 64, 1),
                ("SA", "SDP", 2, 48, 3),
                ("LT", "DCT", 4, 40, 1),
                ("DSC", 5, 2, 64, 3),
            ],
        },
    ],
)
def test_parameter_counts_by_hand(spec: dict) -> None:
    config = BertConfig(spec["hidden"], tuple(LayerConfig(*x) for x in spec["layers"]))
    sizes = EncoderSizes(vocab_size=100, max_length=24)
    model = BertEncoder(config, sizes)
    total, non_embedding = by_hand_count(spec, 100, 24)
    assert count_parameters(model) == total
    assert count_nonembedding_parameters(model) == non_embedding
    assert count_parameters(BertEncoder(config, sizes, device="meta")) == total


def test_first_spec_hand_count_in_numbers() -> None:
    # hidden 128, vocab 100, length 24; SA:WMA (4 heads, 3 x 512) then LT:DFT (1 x 1024):
    # embeddings 12800 + 3072 + 256 + 256 = 16384
    # layer 1: 4 * 16512 + 16384 + (66048 + 2 * 262656 + 65664) + 512 = 739968
    # layer 2: 16512 + (132096 + 131200) + 512 = 280320
    assert by_hand_count(
        {"hidden": 128, "layers": [("SA", "WMA", 4, 512, 3), ("LT", "DFT", 2, 1024, 1)]}, 100, 24
    ) == (16384 + 739968 + 280320, 739968 + 280320)


def test_forward_shapes_init_and_length_check() -> None:
    config = BertConfig(H, tuple(LayerConfig(op, p, 2, 32, 1) for op, p in OPS))
    torch.manual_seed(0)
    model = BertEncoder(config, EncoderSizes(vocab_size=50, max_length=10)).eval()
    tokens = torch.randint(0, 50, (3, 10))
    out = model(tokens)
    assert out.shape == (3, 10, H)
    assert torch.isfinite(out).all()
    # the last LayerNorm: every token's hidden vector has mean 0 and variance 1
    assert out.mean(-1).abs().max() < 1e-5
    w = model.layers[0].feed_forward.linears[0].weight.detach()
    assert (
        abs(float(w.std()) - 0.02) < 0.004
        and float(model.layers[0].feed_forward.output.bias.detach().abs().max()) == 0
    )
    with pytest.raises(ValueError, match="exceeds max_length"):
        model(torch.zeros(1, 11, dtype=torch.long))


def test_linear_roles() -> None:
    config = BertConfig(H, (LayerConfig("SA", "WMA", 2, 32, 3), LayerConfig("DSC", 5, 2, 32, 1)))
    model = BertEncoder(config, EncoderSizes(10, 8))
    roles = [(role, name) for role, name, _ in model.linear_roles()]
    mixing_names = [n for r, n in roles if r == "mixing"]
    assert mixing_names == [
        "layers.0.mixing.query",
        "layers.0.mixing.key",
        "layers.0.mixing.value",
        "layers.0.mixing.query_weight",
        "layers.1.mixing.query",
        "layers.1.mixing.value",
        "layers.1.mixing.key_pointwise",
        "layers.1.mixing.kernel_generator",
    ]
    assert [n for r, n in roles if r == "output"] == [
        "layers.0.mixing_output",
        "layers.1.mixing_output",
    ]
    assert sum(r == "feed_forward" for r, _ in roles) == (3 + 1) + (1 + 1)
