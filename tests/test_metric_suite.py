"""The RNN metric suite against independent, direct computations on tiny models.

The references never use the engine's fast path or its passes: they run the cell graph node
by node (``RecipeCell.step``), take derivatives with ``torch.autograd.functional.jacobian``,
``.backward()`` on a fresh copy of the model, or finite differences, and do the statistics
with numpy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import token_corpus
from torch.nn import functional as F

from nas_engine.corpus import CorpusError, batchify, first_batch, windows
from nas_engine.metrics import MetricFailure, get_metric, metric_names
from nas_engine.result import Candidate
from nas_engine.scoring import Scorer, ScoringSetup
from nas_engine.seeds import derived_seed
from search_spaces.rnn import ModelSizes, Recipe, RNNLanguageModel, preset
from search_spaces.rnn.generator import sample_cell
from search_spaces.rnn.probe import (
    NOISE_LEVELS,
    NTK_MINIBATCHES,
    PASSES,
    RNNProbe,
    check_need,
    plan_depth,
)

K = 1e-5
SEED = 0
V, E, H, T, B = 40, 10, 12, 5, 6
SIZES = ModelSizes(vocab_size=V, embedding_size=E, hidden_size=H, num_layers=3)
TINY = dict(embedding_size=E, hidden_size=H, batch_size=B, bptt=T, seed=SEED)
CORPUS = token_corpus(V, 1200, seed=4)  # 200 steps of 6 columns: room for 10 windows of 5
ALL = tuple(metric_names("rnn"))

MIXED = Recipe.from_dict(
    {
        "a": {"op": "linear", "input": ["x", "h_prev_0", "h_prev_1"]},
        "la": {"op": "activation_leaky_relu", "input": ["a"]},
        "b": {"op": "linear", "input": ["x", "h_prev_1"]},
        "sb": {"op": "activation_sigm", "input": ["b"]},
        "tb": {"op": "activation_tanh", "input": ["b"]},
        "s": {"op": "elementwise_sum", "input": ["la", "tb", "h_prev_1"]},
        "p": {"op": "elementwise_prod", "input": ["s", "sb"]},
        "h_new_1": {"op": "blend", "input": ["sb", "p", "h_prev_1"]},
        "c": {"op": "linear", "input": ["h_new_1", "s"]},
        "h_new_0": {"op": "activation_tanh", "input": ["c"]},
    }
)


def _cells() -> list[tuple[str, Recipe]]:
    rng = np.random.default_rng(11)
    return [("lstm", preset("lstm")), ("gru", preset("gru")), ("mixed", MIXED)] + [
        (f"sample{i}", sample_cell(rng)) for i in range(2)
    ]


CELLS = _cells()
IDS = [n for n, _ in CELLS]


# ---------------------------------------------------------------------- references
def scorer(*metrics: str, corpus=CORPUS, **overrides) -> Scorer:
    return Scorer(ScoringSetup(metrics=metrics, **{**TINY, **overrides}), corpus)


def score(recipe: Recipe, *metrics: str, corpus=CORPUS):
    return scorer(*metrics, corpus=corpus).score(Candidate(recipe.key, recipe.to_dict()))


def reference_model(recipe: Recipe) -> RNNLanguageModel:
    torch.manual_seed(SEED)
    return RNNLanguageModel(recipe, SIZES).eval()


def step_stack(model, e, values_log=None, entering_log=None) -> torch.Tensor:
    """The recurrent stack run node by node with ``step``: last layer's outputs (T, B, H).
    ``values_log`` gets (layer, step, node values); ``entering_log`` the entering states."""
    h = e
    for layer, cell in enumerate(model.layers):
        state = tuple(e.new_zeros(e.shape[1], cell.hidden_size) for _ in range(cell.num_states))
        outputs = []
        for t in range(e.shape[0]):
            if entering_log is not None:
                entering_log.append(state[0])
            values: dict = {}
            state = cell.step(h[t], state, values)
            if values_log is not None:
                values_log.append((layer, t, values))
            outputs.append(state[0])
        h = torch.stack(outputs)
    return h


def the_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (rows 0..T-1) and next-token targets (rows 1..T), batchified by hand."""
    ids = CORPUS.split("test")
    rows = ids.numel() // B
    data = ids[: rows * B].view(B, rows).t()
    return data[:T], data[1 : T + 1]


def numpy_eig_score(rows: np.ndarray) -> float:
    corr = np.corrcoef(np.asarray(rows, dtype=np.float64))
    lam = np.linalg.eigvalsh(corr)
    return float(-np.sum(np.log(lam + K) + 1.0 / (lam + K)))


def numpy_cosine_score(rows: np.ndarray) -> float:
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    s = unit @ unit.T - np.eye(len(rows))
    np.fill_diagonal(s, 0.0)
    n = len(rows)
    return float(1 - np.sum(np.abs(s) ** (1 / 20)) / (2 * (n * n - n)))


def reference_jacobian(model, e: torch.Tensor) -> torch.Tensor:
    """d(sum of all logits)/de with autograd.functional.jacobian on the step-by-step model."""
    return torch.autograd.functional.jacobian(
        lambda emb: model.decoder(step_stack(model, emb)).sum(), e
    )


def jac_rows(j: torch.Tensor) -> np.ndarray:
    return j.transpose(0, 1).reshape(j.shape[1], -1).detach().numpy()


# ---------------------------------------------------------------------- registry
EXPECTED_DIRECTIONS = {
    "hidden_cov": "higher",
    "hidden_cov_l1": "higher",
    "hidden_cov_l2": "higher",
    "hidden_cov_l3": "higher",
    "hidden_drift_l1": "lower",
    "hidden_drift_l2": "lower",
    "hidden_drift_l3": "lower",
    "params": "higher",
    "jacob_cov": "higher",
    "jacob_cosine": "higher",
    **{f"jacob_noise_{lv}": "higher" for lv in NOISE_LEVELS},
    **{f"jacob_noise_{lv}_cosine": "lower" for lv in NOISE_LEVELS},
    "activation_distance": "higher",
    "synflow": "lower",
    "hidden_synflow": "lower",
    "grad_norm": "lower",
    "zen": "higher",
    "ntk_trace": "lower",
    "ntk_cond": "lower",
}


def test_every_metric_is_registered_with_its_direction_and_declared_needs() -> None:
    assert set(ALL) == set(EXPECTED_DIRECTIONS)
    for name, direction in EXPECTED_DIRECTIONS.items():
        metric = get_metric(name, "rnn")
        assert metric.direction == direction, name
        assert metric.description and "\n" not in metric.description
        assert metric.needs
        for need in metric.needs:
            check_need(need)


def test_needs_plan_the_depth() -> None:
    assert plan_depth({"param_count"}, 3) == 1
    assert plan_depth({"entering_states:2", "param_count"}, 3) == 2
    for need in ("activation_codes", "jacobian", "jacobian_noise:huge", "loss_grad"):
        assert plan_depth({"entering_states:1", need}, 3) == 3
    with pytest.raises(ValueError, match="unknown need"):
        plan_depth({"no_such_pass"}, 3)
    with pytest.raises(ValueError, match="layer must be a number"):
        check_need("entering_states:x")
    with pytest.raises(ValueError, match="noise level"):
        check_need("jacobian_noise:medium")
    # A layer beyond the model: the space refuses the setup, before anything is scored.
    assert plan_depth({"entering_states:3"}, 2) == 2
    with pytest.raises(ValueError, match="hidden_cov_l3 needs at least 3 layers, the model has 2"):
        scorer("hidden_cov_l3", num_layers=2)
    assert "saliency:states" in PASSES
    assert scorer("hidden_cov_l2").prober.depth == 2
    assert scorer("hidden_cov", "zen").prober.depth == 3


# ---------------------------------------------------------------------- the model's records
@pytest.mark.parametrize(("name", "recipe"), CELLS, ids=IDS)
def test_recorded_activations_match_step(name: str, recipe: Recipe, float64_default) -> None:
    model = reference_model(recipe)
    e = torch.randn(T, B, E)
    log: list = []
    entering: list = []
    with torch.no_grad():
        expected_out = step_stack(model, e, log, entering)
        run = model.run_layers(e, entering=True, activations=True)
    torch.testing.assert_close(run.output, expected_out, rtol=1e-10, atol=1e-12)
    act_nodes = [n for n, node in recipe.nodes if node.op.startswith("activation_")]
    for layer, rec in enumerate(run.records):
        stacked = rec.stacked_activations()
        assert sorted(stacked) == sorted(act_nodes)
        for layer_, t, values in log:
            if layer_ == layer:
                for node in act_nodes:
                    torch.testing.assert_close(stacked[node][t], values[node], rtol=1e-10, atol=0)
        ref_entering = entering[layer * T : (layer + 1) * T]
        for got, want in zip(rec.entering_steps, ref_entering, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    logits = model.forward_from_embeddings(e)
    torch.testing.assert_close(logits, model.decoder(expected_out), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- Jacobian metrics
@pytest.mark.parametrize(("name", "recipe"), CELLS[:4], ids=IDS[:4])
def test_jacobian_metrics_match_autograd_functional(
    name: str, recipe: Recipe, float64_default
) -> None:
    sc = scorer("jacob_cov", "jacob_cosine")
    model = reference_model(recipe)
    e0 = model.encoder.weight[sc.prober.tokens].detach()
    expected = reference_jacobian(model, e0)
    probe = sc.probe(recipe)
    torch.testing.assert_close(probe.jacobian(), expected, rtol=1e-9, atol=1e-12)
    rows = jac_rows(expected)
    assert rows.shape == (B, T * E)
    ev = sc.score(Candidate(recipe.key, recipe.to_dict()))
    assert ev.status == "ok", ev.error
    assert ev.metrics["jacob_cov"] == pytest.approx(numpy_eig_score(rows), rel=1e-8)
    assert ev.metrics["jacob_cosine"] == pytest.approx(numpy_cosine_score(rows), rel=1e-10)


def test_jacobian_matches_finite_differences(float64_default) -> None:
    recipe = preset("lstm")
    sc = scorer("jacob_cov")
    model = reference_model(recipe)
    e0 = model.encoder.weight[sc.prober.tokens].detach()
    jac = sc.probe(recipe).jacobian()

    def total(e: torch.Tensor) -> float:
        with torch.no_grad():
            return float(model.decoder(step_stack(model, e)).sum())

    rng = np.random.default_rng(0)
    for _ in range(5):
        t, b, k = int(rng.integers(T)), int(rng.integers(B)), int(rng.integers(E))
        step = torch.zeros_like(e0)
        step[t, b, k] = 1e-6
        fd = (total(e0 + step) - total(e0 - step)) / 2e-6
        assert float(jac[t, b, k]) == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("level", list(NOISE_LEVELS))
def test_noised_jacobian_metrics_by_hand(level: str, float64_default) -> None:
    recipe = preset("gru")
    names = (f"jacob_noise_{level}", f"jacob_noise_{level}_cosine")
    sc = scorer(*names)
    model = reference_model(recipe)
    e0 = model.encoder.weight[sc.prober.tokens].detach()
    gen = torch.Generator().manual_seed(derived_seed(SEED, "jacobian_noise"))
    noise = torch.randn(e0.shape, generator=gen, dtype=e0.dtype)
    var = e0.var(dim=1, keepdim=True)  # over the batch axis (unbiased)
    noised = e0 + NOISE_LEVELS[level] * var * noise
    clean_rows = jac_rows(reference_jacobian(model, e0))
    noised_rows = jac_rows(reference_jacobian(model, noised))
    cov = 1 - abs(numpy_eig_score(clean_rows) - numpy_eig_score(noised_rows))
    cos = 1 - abs(numpy_cosine_score(clean_rows) - numpy_cosine_score(noised_rows))
    ev = sc.score(Candidate(recipe.key, recipe.to_dict()))
    assert ev.status == "ok", ev.error
    scale = abs(numpy_eig_score(clean_rows))
    assert ev.metrics[names[0]] == pytest.approx(cov, abs=1e-8 * scale)
    assert ev.metrics[names[1]] == pytest.approx(cos, abs=1e-10)


# ---------------------------------------------------------------------- activation metrics
@pytest.mark.parametrize(("name", "recipe"), CELLS, ids=IDS)
def test_activation_distance_matches_hand_built_kernel(
    name: str, recipe: Recipe, float64_default
) -> None:
    sc = scorer("activation_distance", "hidden_cov")
    model = reference_model(recipe)
    log: list = []
    with torch.no_grad():
        step_stack(model, model.encoder.weight[sc.prober.tokens], values_log=log)
    act = {n for n, node in recipe.nodes if node.op.startswith("activation_")}
    kernel = np.zeros((B, B))
    for _, _, values in log:
        for node in act:
            c = (values[node] > 0).double().numpy()
            kernel += c @ c.T + (1 - c) @ (1 - c).T
    probe = sc.probe(recipe)
    assert np.array_equal(probe.activation_kernel().kernel.numpy(), kernel)
    sign, logdet = np.linalg.slogdet(kernel)
    ev = sc.score(Candidate(recipe.key, recipe.to_dict()))
    if np.linalg.matrix_rank(kernel) < B:
        assert ev.status == "failed" and "kernel is singular" in ev.error
    else:
        assert ev.status == "ok", ev.error
        assert ev.metrics["activation_distance"] == pytest.approx(logdet, rel=1e-12)


@pytest.mark.parametrize(("name", "recipe"), CELLS[:3], ids=IDS[:3])
def test_zen_by_hand(name: str, recipe: Recipe, float64_default) -> None:
    model = reference_model(recipe)
    gen = torch.Generator().manual_seed(derived_seed(SEED, "zen"))
    x = torch.randn(B, T, E, generator=gen)
    eps = torch.randn(B, T, E, generator=gen)
    with torch.no_grad():
        a = step_stack(model, x.transpose(0, 1))[-1]
        b = step_stack(model, (x + 0.1 * eps).transpose(0, 1))[-1]
    expected = math.log(float((a - b).abs().sum(dim=1).mean()))
    ev = score(recipe, "zen")
    assert ev.status == "ok", ev.error
    assert ev.metrics["zen"] == pytest.approx(expected, rel=1e-10, abs=1e-10)


# ---------------------------------------------------------------------- gradient metrics
@pytest.mark.parametrize(("name", "recipe"), CELLS, ids=IDS)
def test_synflow_and_hidden_synflow_by_hand(name: str, recipe: Recipe, float64_default) -> None:
    tokens, _ = the_batch()
    model = reference_model(recipe)  # a fresh copy, differentiated with .backward()
    entering: list = []
    h = step_stack(model, model.encoder(tokens), entering_log=entering)
    for s in entering:
        if s.requires_grad:
            s.retain_grad()
    y = model.decoder(h)
    (0.5 * (y**2).sum()).backward()
    synflow = 0.0
    for cell in model.layers:
        for node, lin in zip(cell.linear_nodes, cell.linears, strict=True):
            start = 0
            for inp in recipe.node_map[node].inputs:
                width = cell.input_size if inp == "x" else cell.hidden_size
                if inp != "x":  # the recurrent (non input-to-hidden) columns
                    cols = slice(start, start + width)
                    sal = lin.weight[:, cols].detach() * lin.weight.grad[:, cols]
                    synflow += float(sal.abs().sum())
                start += width
    synflow += float((model.decoder.weight.detach() * model.decoder.weight.grad).abs().sum())
    hidden = sum(float((s.detach() * s.grad).abs().sum()) for s in entering if s.grad is not None)
    ev = score(recipe, "synflow", "hidden_synflow")
    assert ev.status == "ok", ev.error
    assert ev.metrics["synflow"] == pytest.approx(synflow, rel=1e-10)
    assert ev.metrics["hidden_synflow"] == pytest.approx(hidden, rel=1e-10)


def _loss_gradient(model, inputs, targets) -> torch.Tensor:
    logits = model.decoder(step_stack(model, model.encoder(inputs)))
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    params = list(model.parameters())
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


@pytest.mark.parametrize(("name", "recipe"), CELLS[:3], ids=IDS[:3])
def test_grad_norm_by_hand(name: str, recipe: Recipe, float64_default) -> None:
    inputs, targets = the_batch()
    model = reference_model(recipe)
    logits = model.decoder(step_stack(model, model.encoder(inputs)))
    F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)).backward()
    expected = math.sqrt(sum(float((p.grad**2).sum()) for p in model.parameters()))
    ev = score(recipe, "grad_norm")
    assert ev.status == "ok", ev.error
    assert ev.metrics["grad_norm"] == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(("name", "recipe"), CELLS[:1], ids=IDS[:1])
def test_ntk_by_hand(name: str, recipe: Recipe, float64_default) -> None:
    ids = CORPUS.split("test")
    rows = ids.numel() // B
    data = ids[: rows * B].view(B, rows).t()
    model = reference_model(recipe)
    grads = [
        _loss_gradient(model, data[i * T : (i + 1) * T], data[i * T + 1 : (i + 1) * T + 1])
        for i in range(10)
    ]
    g = torch.stack(grads).numpy()
    theta = g @ g.T
    lam = np.linalg.eigvalsh(theta)
    ev = score(recipe, "ntk_trace", "ntk_cond", "grad_norm")
    assert ev.status == "ok", ev.error
    assert ev.metrics["ntk_trace"] == pytest.approx(math.sqrt(np.trace(theta) / 10), rel=1e-10)
    assert ev.metrics["ntk_cond"] == pytest.approx(lam[-1] / lam[0], rel=1e-6)
    assert ev.metrics["grad_norm"] == pytest.approx(np.linalg.norm(g[0]), rel=1e-10)


# ---------------------------------------------------------------------- invariances
def _renamed(recipe: Recipe, prefix: str = "renamed_") -> Recipe:
    fixed = {n for n, _ in recipe.nodes if n.startswith("h_new_")}

    def new(n: str) -> str:
        return n if n in fixed or n == "x" or n.startswith("h_prev_") else prefix + n

    return Recipe.from_dict(
        {
            new(n): {"op": node.op, "input": [new(i) for i in node.inputs]}
            for n, node in recipe.nodes
        }
    )


@pytest.mark.parametrize("recipe", [preset("lstm"), MIXED], ids=["lstm", "mixed"])
def test_every_metric_is_unchanged_by_renaming_nodes(recipe: Recipe) -> None:
    renamed = _renamed(recipe)
    assert set(renamed.node_map) != set(recipe.node_map)
    sc = scorer(*ALL)
    a = sc.score(Candidate(recipe.key, recipe.to_dict()))
    b = sc.score(Candidate(renamed.key, renamed.to_dict()))
    assert a.status == b.status == "ok", (a.error, b.error)
    assert set(a.metrics) == set(ALL)
    assert a.metrics == b.metrics


def test_jacob_cov_is_invariant_to_the_order_of_sequences(float64_default) -> None:
    recipe = preset("gru")
    sc = scorer("jacob_cov")
    base = sc.score(Candidate(recipe.key, recipe.to_dict())).metrics["jacob_cov"]
    sc.prober.tokens = sc.prober.tokens[:, torch.tensor([3, 0, 5, 1, 4, 2])]
    permuted = sc.score(Candidate(recipe.key, recipe.to_dict())).metrics["jacob_cov"]
    assert permuted == pytest.approx(base, rel=1e-9)


def test_all_metrics_deterministic_and_global_rng_untouched() -> None:
    recipe = MIXED
    sc = scorer(*ALL)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = sc.score(Candidate(recipe.key, recipe.to_dict()))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)
    second = sc.score(Candidate(recipe.key, recipe.to_dict()))
    assert first.status == "ok", first.error
    assert first.metrics == second.metrics
    other = scorer("zen", "jacob_noise_huge", seed=1).score(Candidate(recipe.key, recipe.to_dict()))
    assert other.metrics["zen"] != first.metrics["zen"]
    assert other.metrics["jacob_noise_huge"] != first.metrics["jacob_noise_huge"]


# ---------------------------------------------------------------------- side effects
def _hooks(module: torch.nn.Module) -> list:
    return [
        h
        for m in module.modules()
        for h in (
            m._forward_hooks,
            m._forward_pre_hooks,
            m._backward_hooks,
            m._backward_pre_hooks,
            getattr(m, "_state_dict_hooks", {}),
        )
        if h
    ]


def test_scoring_leaves_weights_grads_and_hooks_untouched() -> None:
    recipe = MIXED
    sc = scorer(*ALL)
    probe = sc.probe(recipe)
    model = probe.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    for metric in sc.metrics:
        metric.fn(probe)
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # bitwise
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not _hooks(model)
    mod = torch.nn.modules.module
    assert not mod._global_forward_hooks and not mod._global_backward_hooks
    assert not mod._global_forward_pre_hooks
    assert not model.training
    assert torch.is_grad_enabled()


# ---------------------------------------------------------------------- pass sharing and cost
@pytest.fixture
def count_grads(monkeypatch):
    """Counts torch.autograd.grad calls and how many inputs each asked for."""
    calls: list[int] = []
    original = torch.autograd.grad

    def counting(outputs, inputs, *args, **kwargs):
        calls.append(len(inputs) if isinstance(inputs, (list, tuple)) else 1)
        return original(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    return calls


@pytest.fixture
def count_forwards(monkeypatch):
    calls: list[str] = []
    for name in ("run_layers", "entering_states", "forward"):
        original = getattr(RNNLanguageModel, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(RNNLanguageModel, name, counting)
    return calls


@pytest.mark.parametrize(
    ("metrics", "backwards"),
    [
        (("synflow", "hidden_synflow"), 1),
        (("jacob_cov", "jacob_cosine"), 1),
        (("jacob_cov", "jacob_noise_large", "jacob_noise_large_cosine"), 2),
        (("grad_norm",), 1),
        (("grad_norm", "ntk_trace", "ntk_cond"), NTK_MINIBATCHES),
        (ALL, 1 + 4 + NTK_MINIBATCHES),  # saliency, 4 Jacobians, 10 loss gradients
        (("hidden_cov", "hidden_cov_l3", "activation_distance", "zen", "params"), 0),
        (("hidden_cov", "hidden_cov_l3", "hidden_drift_l2", "activation_distance"), 0),
    ],
)
def test_passes_are_shared(metrics, backwards, count_grads, count_forwards) -> None:
    ev = score(MIXED, *metrics)
    assert ev.status == "ok", ev.error
    assert len(count_grads) == backwards
    if backwards == 0:
        # one forward for hidden_cov, hidden_drift (any layer) and the NASWOT codes, one for zen
        expected = ["run_layers", "run_layers"] if "zen" in metrics else ["run_layers"]
        assert count_forwards == expected


def test_the_ntk_metrics_share_one_gram_matrix(monkeypatch) -> None:
    """ntk_trace and ntk_cond read the same G G^T: its rows are read once, not per metric."""
    rows: list[int] = []
    original = RNNProbe.loss_gradient

    def counting(self, index: int = 0):
        rows.append(index)
        return original(self, index)

    monkeypatch.setattr(RNNProbe, "loss_gradient", counting)
    assert score(MIXED, "ntk_trace", "ntk_cond").status == "ok"
    assert rows == list(range(NTK_MINIBATCHES))


def test_synflow_parts_cost_only_what_they_need(count_grads) -> None:
    weights = sum(len(c.linears) for c in reference_model(MIXED).layers) + 1
    score(MIXED, "synflow")
    assert count_grads == [weights]
    count_grads.clear()
    score(MIXED, "hidden_synflow")
    assert count_grads == [3 * (T - 1)]  # the states entering steps 1..T-1 of each layer


def test_hidden_cov_alone_is_forward_only_layer_1(monkeypatch, count_forwards) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("autograd ran")

    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    sc = scorer("hidden_cov")
    assert sc.prober.depth == 1 and sc.prober.targets is None and sc.prober.minibatches is None
    probe = sc.probe(MIXED)
    value = get_metric("hidden_cov").fn(probe).value
    assert math.isfinite(value)
    assert len(probe.model.layers) == 1 and probe.model.decoder is None
    assert not probe.entering_states(1).requires_grad
    assert probe._forward.kernel is None  # no activation codes recorded
    assert count_forwards == ["entering_states"]
    cached = {"model", "_forward"}
    assert cached <= set(vars(probe)) and not {"_saliency", "zen_outputs"} & set(vars(probe))
    assert sc.score(Candidate(MIXED.key, MIXED.to_dict())).status == "ok"


# ---------------------------------------------------------------------- failures
SIGMOID_ONLY = Recipe.from_dict(
    {
        "a": {"op": "linear", "input": ["x", "h_prev_0"]},
        "h_new_0": {"op": "activation_sigm", "input": ["a"]},
    }
)
NO_ACTIVATION = Recipe.from_dict({"h_new_0": {"op": "linear", "input": ["x", "h_prev_0"]}})


def test_singular_naswot_kernel_is_a_failure_with_reason() -> None:
    ev = score(SIGMOID_ONLY, "activation_distance")
    assert ev.status == "failed"
    assert ev.error == f"kernel is singular: {B} identical codes"
    assert "activation_distance" not in ev.metrics
    ev = score(NO_ACTIVATION, "activation_distance")
    assert ev.status == "failed" and "no activation node" in ev.error


@pytest.mark.parametrize(
    "metric", ["jacob_cov", "jacob_cosine", "jacob_noise_small", "jacob_noise_huge_cosine"]
)
def test_non_finite_jacobian_is_a_failure(monkeypatch, metric: str) -> None:
    original = RNNProbe.jacobian

    def poisoned(self, level=None):
        j = original(self, level).clone()
        j[1, 2, 3] = float("nan")
        return j

    monkeypatch.setattr(RNNProbe, "jacobian", poisoned)
    ev = score(preset("lstm"), metric)
    assert ev.status == "failed" and "non-finite" in ev.error and "Jacobian" in ev.error


def test_zero_jacobian_row_fails_cosine(monkeypatch) -> None:
    original = RNNProbe.jacobian

    def zeroed(self, level=None):
        j = original(self, level).clone()
        j[:, 4] = 0.0
        return j

    monkeypatch.setattr(RNNProbe, "jacobian", zeroed)
    ev = score(preset("lstm"), "jacob_cosine")
    assert ev.status == "failed" and "rows are zero" in ev.error


def test_non_finite_gradients_fail_the_gradient_metrics(monkeypatch) -> None:
    def inf_grad(self, index=0):
        return torch.full((5,), float("inf"))

    monkeypatch.setattr(RNNProbe, "loss_gradient", inf_grad)
    for metric in ("grad_norm", "ntk_trace", "ntk_cond"):
        ev = score(preset("gru"), metric)
        assert ev.status == "failed" and ev.error, metric
        assert "inf" in ev.error or "non-finite" in ev.error


def test_short_split_fails_only_the_metrics_that_need_more() -> None:
    # 20 steps of 6 columns: enough for the batch and its targets, not for 10 windows.
    short = token_corpus(V, 20 * B, seed=5)
    ev = score(preset("gru"), "grad_norm", "hidden_cov", corpus=short)
    assert ev.status == "ok", ev.error
    ev = score(preset("gru"), "ntk_trace", corpus=short)
    assert ev.status == "failed"
    assert "10 windows of 5 steps" in ev.error and "no minibatch" in ev.error
    # Exactly T steps: hidden_cov still works, grad_norm has no targets.
    exact = token_corpus(V, T * B, seed=5)
    assert score(preset("gru"), "hidden_cov", corpus=exact).status == "ok"
    ev = score(preset("gru"), "grad_norm", corpus=exact)
    assert ev.status == "failed" and "no next-token targets" in ev.error
    assert "plus one target step" in ev.error


# ---------------------------------------------------------------------- corpus windows
def test_first_batch_with_targets_and_windows() -> None:
    ids = torch.arange(6 * 40)
    data = batchify(ids, 6)
    plain = first_batch(ids, 6, 7)
    both = first_batch(ids, 6, 7, targets=True)
    assert both.shape == (8, 6)
    assert torch.equal(both[:7], plain) and torch.equal(both[1:], data[1:8])
    wins = windows(ids, 6, 7, 5)
    assert len(wins) == 5
    assert torch.equal(wins[0][0], plain) and torch.equal(wins[0][1], both[1:])
    for i, (x, y) in enumerate(wins):
        assert torch.equal(x, data[7 * i : 7 * i + 7]) and torch.equal(
            y, data[7 * i + 1 : 7 * i + 8]
        )
    with pytest.raises(CorpusError, match="too few for 6 windows"):
        windows(ids, 6, 7, 6)  # needs 43 steps, has 40
    with pytest.raises(CorpusError, match="plus one target step"):
        first_batch(ids, 6, 40, targets=True)


def test_scorer_gives_the_probe_the_next_tokens() -> None:
    sc = scorer("grad_norm", "ntk_cond", "hidden_cov")
    inputs, targets = the_batch()
    assert torch.equal(sc.prober.tokens, inputs) and torch.equal(sc.prober.targets, targets)
    assert len(sc.prober.minibatches) == NTK_MINIBATCHES
    assert torch.equal(sc.prober.minibatches[0][0], inputs)
    assert torch.equal(sc.prober.minibatches[0][1], targets)


# ---------------------------------------------------------------------- hidden_drift
def numpy_drift(states: np.ndarray) -> float:
    """mean |h_t - h_(t-1)| over t = 2..T-1 / mean |h_t| over t = 1..T-1, written out as
    loops over steps (states: (T, B, H), row 0 the zero initial state)."""
    steps = states.shape[0]
    moves = [np.abs(states[t] - states[t - 1]).mean() for t in range(2, steps)]
    sizes = [np.abs(states[t]).mean() for t in range(1, steps)]
    return float(np.mean(moves) / np.mean(sizes))


@pytest.mark.parametrize("layer", [1, 2, 3])
@pytest.mark.parametrize(("name", "recipe"), CELLS, ids=IDS)
def test_hidden_drift_matches_step_by_step_reference(
    name: str, recipe: Recipe, layer: int, float64_default
) -> None:
    model = reference_model(recipe)
    tokens, _ = the_batch()
    entering: list = []
    with torch.no_grad():
        step_stack(model, model.encoder.weight[tokens], entering_log=entering)
    states = torch.stack(entering[(layer - 1) * T : layer * T]).numpy()  # (T, B, H_layer)
    assert np.all(states[0] == 0)
    expected = numpy_drift(states)
    ev = score(recipe, f"hidden_drift_l{layer}")
    assert ev.status == "ok", ev.error
    assert ev.metrics[f"hidden_drift_l{layer}"] == pytest.approx(expected, rel=1e-9)


class _FakeProbe:
    def __init__(self, states: torch.Tensor) -> None:
        self.states = states

    def entering_states(self, layer: int) -> torch.Tensor:
        return self.states


def test_hidden_drift_is_relative_and_ignores_the_initial_state() -> None:
    gen = torch.Generator().manual_seed(3)
    states = torch.randn(6, 4, 5, generator=gen, dtype=torch.float64)
    drift = get_metric("hidden_drift_l1").fn
    base = drift(_FakeProbe(states))
    assert drift(_FakeProbe(7.5 * states)) == pytest.approx(base, rel=1e-12)
    other_start = states.clone()
    other_start[0] = 100.0
    assert drift(_FakeProbe(other_start)) == pytest.approx(base, rel=1e-12)
    # A state that never moves after step 1 has no drift; one that flips sign every step has
    # a drift of 2 (|h - (-h)| = 2|h|).
    still = states[1:2].expand(6, 4, 5).clone()
    assert drift(_FakeProbe(still)) == 0.0
    signs = torch.tensor([(-1.0) ** t for t in range(6)], dtype=torch.float64)
    flipping = states[1:2] * signs[:, None, None]
    assert drift(_FakeProbe(flipping)) == pytest.approx(2.0, rel=1e-12)


def test_hidden_cov_fails_on_a_non_finite_state_naming_the_layer() -> None:
    poisoned = torch.randn(5, 3, 4)
    poisoned[2, 0, 1] = float("nan")
    with pytest.raises(
        MetricFailure, match="non-finite values in the hidden state entering layer 2"
    ):
        get_metric("hidden_cov_l2").fn(_FakeProbe(poisoned))


def test_hidden_drift_failures_have_reasons() -> None:
    drift = get_metric("hidden_drift_l2").fn
    with pytest.raises(MetricFailure, match="every state entering layer 2 is zero"):
        drift(_FakeProbe(torch.zeros(5, 3, 4)))
    with pytest.raises(MetricFailure, match=">= 3 steps"):
        drift(_FakeProbe(torch.ones(2, 3, 4)))
    poisoned = torch.ones(5, 3, 4)
    poisoned[3, 1, 2] = float("inf")
    with pytest.raises(MetricFailure, match="non-finite"):
        drift(_FakeProbe(poisoned))
    ev = scorer("hidden_drift_l1", bptt=2).score(Candidate(MIXED.key, MIXED.to_dict()))
    assert ev.status == "failed" and ">= 3 steps" in ev.error
