"""The BERT network families (search_spaces/bert/networks.py): parameter counts against the
benchmark's published columns for every dev entry and against the reference docs' hand
counts, what each family ignores of a configuration, the notebook's DSC against a line-by-line
transcription of ConvBERT's forward, and the existing metrics running on every family."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from helpers import DATA_DIR, require
from torch.nn import functional as F

from nas_engine.metrics import get_metric
from nas_engine.parameters import count_parameters
from search_spaces.bert.config import BertConfig, LayerConfig
from search_spaces.bert.model import AttentionProbs, BertEncoder, EncoderSizes
from search_spaces.bert.networks import (
    DEFAULT_PROTOCOL,
    FAMILIES,
    MAX_POSITIONS,
    VOCAB_SIZE,
    ConvAttention,
    UnknownFamilyError,
    build_network,
    count_nonembedding_parameters,
)
from search_spaces.bert.probe import BertProbe

BERT_DIR = DATA_DIR / "nasbench_bert"
OPS = [("SA", "SDP"), ("SA", "WMA"), ("LT", "DFT"), ("LT", "DCT"), ("DSC", 5), ("DSC", 9)]
# An entry's configuration with each of the six operations once (hidden 128: the paper family
# ignores it, the as-trained one uses it).
ALL_OPS = BertConfig(
    128,
    tuple(
        LayerConfig(op, param, 2 + 2 * (i % 2), (512, 1024)[i // 3], 1 + 2 * (i % 2))
        for i, (op, param) in enumerate(OPS)
    ),
)


@pytest.fixture(scope="module")
def dev_entries() -> list[tuple[BertConfig, pd.Series]]:
    """(configuration, CSV row) of the 250 dev entries."""
    benchmark = json.loads(require(BERT_DIR / "benchmark_dev.json").read_text())
    table = pd.read_csv(require(BERT_DIR / "networks_dev.csv")).set_index("id")
    out = [(BertConfig.from_dict(e), table.loc[e["id"]]) for e in benchmark]
    assert len(out) == 250
    return out


def tokens(batch: int = 2, length: int = 12, seed: int = 3) -> torch.Tensor:
    return torch.randint(
        0, VOCAB_SIZE, (batch, length), generator=torch.Generator().manual_seed(seed)
    )


def built(config: BertConfig, family: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(config, family).eval()


def layer(op: str, param, heads: int = 4, ff: int = 1024, depth: int = 1) -> LayerConfig:
    return LayerConfig(op, param, heads, ff, depth)


# ---------------------------------------------------------------------------- counts
def test_as_trained_counts_equal_the_benchmark_columns(dev_entries) -> None:
    wrong = []
    for config, row in dev_entries:
        model = build_network(config, "as-trained", "meta")
        # as_trained.md §3.2: the generator is the same network at a quarter of the width,
        # sharing the embedding tables (so its unshared part is the non-embedding count).
        generator = build_network(
            BertConfig(config.hidden_size // 4, config.layers), "as-trained", "meta"
        )
        got = (
            count_parameters(model),
            count_nonembedding_parameters(model),
            count_nonembedding_parameters(generator),
        )
        want = (
            row.as_trained_params,
            row.as_trained_nonembedding_params,
            row.as_trained_generator_unshared_params,
        )
        if got != want:
            wrong.append((row.name, got, want))
    assert not wrong, f"{len(wrong)} of 250 differ, e.g. {wrong[:3]}"


def test_paper_notebook_counts_equal_the_papers(dev_entries) -> None:
    wrong = []
    for config, row in dev_entries:
        got = count_parameters(build_network(config, "paper-notebook", "meta"))
        if got != row.paper_number_of_parameters:
            wrong.append((row.name, got, row.paper_number_of_parameters))
    assert not wrong, f"{len(wrong)} of 250 differ, e.g. {wrong[:3]}"


def test_hand_counts_of_the_docs() -> None:
    """as_trained.md §7 hand checks 1 and 3 (ids 1 and 3, not among the dev entries) and
    paper_notebook.md §3's per-operation counts, on real (not meta) models."""
    id1 = BertConfig(
        256,
        (
            layer("LT", "DFT", 4, 1024, 3),
            layer("SA", "SDP", 2, 1024, 1),
            layer("DSC", 9, 4, 512, 3),
            layer("DSC", 5, 2, 512, 1),
        ),
    )
    id3 = BertConfig(128, (layer("DSC", 9, 4, 512, 1), layer("DSC", 5, 2, 512, 1)))
    assert count_parameters(built(id1, "as-trained")) == 9_920_512
    assert count_parameters(built(id3, "as-trained")) == 4_369_408

    mixer = {  # paper_notebook.md §3: the mixer's parameters, self-output dense + LN included
        ("SA", "SDP", 4): 263_680,
        ("SA", "WMA", 2): 329_216,
        ("LT", "DFT", 4): 65_792,
        ("LT", "DCT", 2): 65_792,
        ("DSC", 5, 2): 232_709,
        ("DSC", 5, 4): 233_354,
        ("DSC", 9, 2): 234_249,
        ("DSC", 9, 4): 235_410,
    }
    for (op, param, heads), want in mixer.items():
        model = built(BertConfig(256, (layer(op, param, heads, 512, 3),)), "paper-notebook")
        assert count_parameters(model) == 4_005_888 + want + 526_080 + 2 * 1_049_600, (op, param)
    # ELECTRA-Small's shape (as_trained.md §7): 12 SDP layers at H = 256 with a 4H FFN
    small = BertConfig(256, (layer("SA", "SDP", 4, 512, 1),) * 12)
    assert count_parameters(build_network(small, "as-trained", "meta")) == 13_483_008


def test_counts_do_not_depend_on_the_input() -> None:
    """The families fix the vocabulary and the position table: a count is the same whatever
    the length scored, where BertEncoder's follows its sizes."""
    for family in FAMILIES:
        model = built(ALL_OPS, family)
        before = count_parameters(model)
        for length in (5, 40):
            assert model(tokens(length=length)).shape[1] == length
        assert count_parameters(model) == before
        assert count_parameters(build_network(ALL_OPS, family, "meta")) == before
    short = count_parameters(BertEncoder(ALL_OPS, EncoderSizes(VOCAB_SIZE, 40), "meta"))
    literal = count_parameters(build_network(ALL_OPS, "literal", "meta"))
    assert literal - short == (MAX_POSITIONS - 40) * ALL_OPS.hidden_size


# ---------------------------------------------------------------------------- semantics
def test_literal_is_todays_encoder_at_the_familys_sizes() -> None:
    torch.manual_seed(7)
    today = BertEncoder(ALL_OPS, EncoderSizes(VOCAB_SIZE, MAX_POSITIONS)).eval()
    x = tokens()
    with torch.no_grad():
        assert torch.equal(built(ALL_OPS, "literal", seed=7)(x), today(x))


def relabelled(config: BertConfig, **changes) -> BertConfig:
    return BertConfig(
        changes.pop("hidden_size", config.hidden_size),
        tuple(
            LayerConfig(**{**x.to_dict(), **{k: v(x) for k, v in changes.items()}})
            for x in config.layers
        ),
    )


def test_as_trained_ignores_the_operation_labels() -> None:
    """as_trained.md §1: every layer trained as SDP attention with its own heads; F unused
    when num_feed_forward is 1. So relabelling operations (and F of one-layer stacks) gives
    the same network, weight for weight, and the output of the same seed."""
    base = relabelled(ALL_OPS, operation_type=lambda x: "SA", operation_parameter=lambda x: "SDP")
    other_f = relabelled(
        ALL_OPS,
        feed_forward_dimension=lambda x: (
            x.feed_forward_dimension if x.num_feed_forward == 3 else 1536 - x.feed_forward_dimension
        ),
    )
    x = tokens()
    with torch.no_grad():
        want = built(base, "as-trained")(x)
        for config in (ALL_OPS, other_f):
            assert torch.equal(built(config, "as-trained")(x), want)
    model = built(ALL_OPS, "as-trained")
    assert sum(isinstance(m, AttentionProbs) for m in model.modules()) == len(OPS)
    first = [x.feed_forward.linears[0].out_features for x in model.layers]
    assert first == [4 * 128] * len(OPS)


def test_initialisations() -> None:
    """as_trained.md §4.5: TF truncated normal (std 0.02, cut at 2 std: std 0.01759) for the
    tables and kernels, Glorot-uniform for the projection; paper_notebook.md §4: normal(0, 0.02)
    with the padding row 0."""
    config = BertConfig(256, (layer("DSC", 9),))
    trained = built(config, "as-trained")
    table = trained.embeddings.token.weight.detach()
    assert float(table.abs().max()) <= 0.04
    assert abs(float(table.std()) - 0.01759) < 2e-4
    projection = trained.embeddings.projection.weight.detach()
    bound = math.sqrt(6 / (128 + 256))
    assert bound * 0.98 < float(projection.abs().max()) <= bound
    paper = built(config, "paper-notebook")
    table = paper.embeddings.token.weight.detach()
    assert float(table[0].abs().max()) == 0 and float(table[1:].abs().max()) > 0.07
    conv = paper.layers[0].mixing.key_conv.depthwise.weight.detach()
    assert abs(float(conv.std()) - 0.02) < 0.002


def notebook_draw(config: BertConfig, seed: int) -> list[torch.Tensor]:
    """The notebook's weights (paper_notebook.md §4), drawn as its code draws them and
    written from the spec alone: torch's default initialisation of each module as built, in
    registration order (tables, LayerNorm, the projection; per layer the mixer, the
    self-output linear and LayerNorm, the feed-forward linears and LayerNorm), ConvBERT's
    normal(0, 0.02) redraw of both convolution kernels as they are built, then ``post_init``'s
    normal(0, 0.02) for every linear and table in the same order, convolutions untouched.
    Returns the linear, table and convolution weights in registration order."""
    nn = torch.nn
    torch.manual_seed(seed)
    built_modules: list[nn.Module] = [
        nn.Embedding(VOCAB_SIZE, 128, padding_idx=0),
        nn.Embedding(512, 128),
        nn.Embedding(2, 128),
        nn.LayerNorm(128),
        nn.Linear(128, 256),
    ]
    for x in config.layers:
        h, kind = x.num_operation_heads, x.operation_type
        if kind == "SA":
            built_modules += [nn.Linear(256, 256) for _ in range(3)]
            if x.operation_parameter == "WMA":
                built_modules.append(nn.Linear(256, 256, bias=False))
        elif kind == "LT":
            built_modules.append(nn.Linear(256, 256))
        else:
            heads, k = max(h // 2, 1), int(x.operation_parameter)
            width = heads * (256 // h)
            built_modules += [nn.Linear(256, width) for _ in range(3)]
            depthwise = nn.Conv1d(256, 256, k, padding=k // 2, groups=256, bias=False)
            pointwise = nn.Conv1d(256, width, 1, bias=False)
            with torch.no_grad():
                depthwise.weight.normal_(0.0, 0.02)
                pointwise.weight.normal_(0.0, 0.02)
            built_modules += [depthwise, pointwise]
            built_modules += [nn.Linear(width, heads * k), nn.Linear(256, width)]
        if kind != "LT":
            built_modules += [nn.Linear(256, 256), nn.LayerNorm(256)]
        widths = [256] + [1024] * x.num_feed_forward
        built_modules += [nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)]
        built_modules += [nn.Linear(1024, 256), nn.LayerNorm(256)]
    with torch.no_grad():
        for module in built_modules:
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, 0.02)
        built_modules[0].weight[0].zero_()
    return [m.weight for m in built_modules if isinstance(m, (nn.Linear, nn.Embedding, nn.Conv1d))]


def test_paper_notebook_draws_the_notebooks_weights() -> None:
    """The same seed gives the weights the notebook's construction order gives, bit for bit,
    in every operation (where the DSC kernels are drawn moves every later weight)."""
    for config in (ALL_OPS, BertConfig(256, (layer("SA", "SDP", depth=3), layer("DSC", 5, 2)))):
        expected = notebook_draw(config, seed=5)
        torch.manual_seed(5)
        model = build_network(config, "paper-notebook")
        ours = [
            m.weight
            for m in model.modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d))
        ]
        assert [tuple(w.shape) for w in ours] == [tuple(w.shape) for w in expected]
        for mine, theirs in zip(ours, expected, strict=True):
            assert torch.equal(mine, theirs)


def test_paper_notebook_ignores_hidden_size_and_feed_forward_width() -> None:
    """paper_notebook.md §1: hidden 256 and FFN 1024 whatever the entry says."""
    other = relabelled(
        ALL_OPS, hidden_size=256, feed_forward_dimension=lambda x: 1536 - x.feed_forward_dimension
    )
    x = tokens()
    with torch.no_grad():
        out = built(ALL_OPS, "paper-notebook")(x)
        assert out.shape == (2, 12, 256)
        assert torch.equal(built(other, "paper-notebook")(x), out)


def test_paper_lt_layer_has_no_residual_to_the_layer_input() -> None:
    """The notebook's LT layer is LN(FFN(u) + u), u = transform(input(x)): with the input
    projection zeroed, the layer's output no longer depends on its input at all."""
    model = built(BertConfig(256, (layer("LT", "DFT", 2),)), "paper-notebook")
    lt = model.layers[0]
    with torch.no_grad():
        lt.mixing.projection.weight.zero_()
        a, b = torch.randn(2, 1, 7, 256).unbind(0)
        assert torch.allclose(lt(a), lt(b))
    # the literal family keeps the residual: its LT layer still sees the input
    literal = built(BertConfig(256, (layer("LT", "DFT", 2),)), "literal").layers[0]
    with torch.no_grad():
        literal.mixing.projection.weight.zero_()
        assert not torch.allclose(literal(a), literal(b))


def convbert_reference(module: ConvAttention, x: torch.Tensor) -> torch.Tensor:
    """ConvBERT's self-attention forward (transformers' ConvBertSelfAttention, as the notebook's
    copy), transcribed with its own reshapes on the module's parameters."""
    b = x.shape[0]
    heads, d, k = module.heads, module.head_width, module.kernel
    all_head = heads * d
    q, key, v = module.query(x), module.key(x), module.value(x)
    conv = module.key_conv.depthwise(x.transpose(1, 2))
    conv = (module.key_conv.pointwise(conv) + module.key_conv.bias).transpose(1, 2)

    def split(t):
        return t.view(b, -1, heads, d).permute(0, 2, 1, 3)

    kernel = module.conv_kernel(conv * q).reshape(-1, k, 1).softmax(dim=1)
    out = module.conv_out(x).reshape(b, -1, all_head).transpose(1, 2).contiguous().unsqueeze(-1)
    out = F.unfold(out, kernel_size=[k, 1], dilation=1, padding=[(k - 1) // 2, 0], stride=1)
    out = out.transpose(1, 2).reshape(b, -1, all_head, k).reshape(-1, d, k)
    out = torch.matmul(out, kernel).reshape(-1, heads, d)
    scores = split(q) @ split(key).transpose(-1, -2) / math.sqrt(d)
    context = (scores.softmax(dim=-1) @ split(v)).permute(0, 2, 1, 3)
    context = torch.cat([context, out.reshape(b, -1, heads, d)], 2)
    return context.reshape(b, -1, 2 * all_head)


@pytest.mark.parametrize(("heads", "kernel"), [(2, 5), (4, 9)])
def test_paper_dsc_against_convbert(heads: int, kernel: int) -> None:
    torch.manual_seed(1)
    module = ConvAttention(256, heads, kernel).double()
    for p in module.parameters():  # far from init so every path contributes
        torch.nn.init.normal_(p, 0.0, 0.1)
    x = torch.randn(2, 11, 256, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(module(x), convbert_reference(module, x))


def test_bad_family_and_too_long_input() -> None:
    with pytest.raises(UnknownFamilyError, match="known: as-trained, literal, paper-notebook"):
        build_network(ALL_OPS, "trained")
    for family in FAMILIES:
        with pytest.raises(ValueError, match="exceeds the 512 positions"):
            build_network(ALL_OPS, family, "meta")(torch.zeros(1, 513, dtype=torch.long))


# ---------------------------------------------------------------------------- metrics
def family_probe(config: BertConfig, family: str, seed: int = 0, **kwargs) -> BertProbe:
    """The repo's BERT probe on the family's network."""
    needs = {"param_count", "forward", "backward"}
    sizes = EncoderSizes(VOCAB_SIZE, MAX_POSITIONS)
    return BertProbe(config, sizes, tokens(length=16), seed, needs=needs, family=family, **kwargs)


METRICS = [
    "params",
    "head_confidence",
    "head_softmax_confidence",
    "head_importance",
    "synaptic_diversity",
    "synaptic_saliency",
    "activation_distance",
    "jacob_cov",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_existing_metrics_run_on_every_family(family: str) -> None:
    probe = family_probe(ALL_OPS, family)
    details = {}
    for name in METRICS:
        out = get_metric(name, "bert").fn(probe)
        assert math.isfinite(float(getattr(out, "value", out))), name
        details.update(getattr(out, "details", {}))
    assert probe.param_count == count_parameters(build_network(ALL_OPS, family, "meta"))
    layers = len(OPS)
    depth = sum(x.num_feed_forward for x in ALL_OPS.layers)
    assert details["synaptic_saliency_terms"] == depth + layers
    assert details["activation_distance_terms"] == depth
    if family == "paper-notebook":
        # paper_notebook.md §5: softmax hooks one per layer (LT's unused softmax too); head
        # importance terms SDP 3, WMA 4, LT 1, DSC 4 (q, k, v, conv_out; not the kernel head)
        assert details["head_softmax_confidence_terms"] == layers
        assert details["head_importance_terms"] == 3 + 4 + 1 + 1 + 4 + 4
        # head confidence: q/k/v, + WMA's weight, LT's input; DSC q/k/v only (not conv_kernel,
        # conv_out); synaptic diversity: every linear under the notebook's `operation`, the
        # self-output dense included (SDP 4, WMA 5, LT 1, DSC 6)
        assert details["head_confidence_terms"] == 3 + 4 + 1 + 1 + 3 + 3
        assert details["synaptic_diversity_terms"] == 4 + 5 + 1 + 1 + 6 + 6
    elif family == "as-trained":
        assert details["head_softmax_confidence_terms"] == layers
        assert details["head_importance_terms"] == 3 * layers
    else:
        assert details["head_softmax_confidence_terms"] == 2  # SA layers only


def test_paper_notebook_is_scored_as_the_notebook_scored_it() -> None:
    """paper_notebook.md §4: train mode with dropout 0.1 and a backward from a gradient of
    ones. Dropout makes the score differ from the same network's in eval mode, yet the masks
    come from the probe's seed: the same value twice, and torch's global RNG untouched."""

    def confidence(probe: BertProbe) -> float:
        return float(get_metric("head_confidence", "bert").fn(probe).value)

    before = torch.random.get_rng_state()
    notebook = family_probe(ALL_OPS, "paper-notebook")
    assert notebook.model.training
    first = confidence(notebook)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert confidence(family_probe(ALL_OPS, "paper-notebook")) == first
    eval_mode = family_probe(ALL_OPS, "paper-notebook", protocol=DEFAULT_PROTOCOL)
    assert not eval_mode.model.training
    assert abs(confidence(eval_mode) - first) > 1e-3 * abs(first)
    # the gradient of ones through the last LayerNorm is rounding residue; a normal seed's is not
    ones = max(float(g.grad.abs().max()) for g in notebook.backward.linears)
    normal = max(float(g.grad.abs().max()) for g in eval_mode.backward.linears)
    assert ones < 1e-4 * normal
    for family in ("as-trained", "literal"):
        assert not family_probe(ALL_OPS, family).model.training


def test_a_given_network_is_scored_as_it_is_and_the_seed_draws_only_its_masks() -> None:
    """``network=``: the weights are the given network's (not redrawn from the seed), while
    the seed still draws the dropout masks. This is what lets bert_fidelity.py vary the weight
    draw and the masks one at a time."""

    def confidence(probe: BertProbe) -> float:
        return float(get_metric("head_confidence", "bert").fn(probe).value)

    torch.manual_seed(5)
    drawn_from_5 = build_network(ALL_OPS, "paper-notebook")
    given = family_probe(ALL_OPS, "paper-notebook", seed=5, network=drawn_from_5)
    assert confidence(given) == confidence(family_probe(ALL_OPS, "paper-notebook", seed=5))
    # other masks (seed 6) on the same weights: not the seed-5 value, nor seed 6's network
    other_masks = family_probe(ALL_OPS, "paper-notebook", seed=6, network=drawn_from_5)
    assert torch.equal(
        other_masks.model.embeddings.token.weight, drawn_from_5.embeddings.token.weight
    )
    values = {
        confidence(given),
        confidence(other_masks),
        confidence(family_probe(ALL_OPS, "paper-notebook", seed=6)),
    }
    assert len(values) == 3
