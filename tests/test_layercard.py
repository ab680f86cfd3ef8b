"""Layer Card: our formulas (LAYERCARD.md) against closed forms, direct computations and constructed cards."""
import json
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from revtune.errors import RevtuneError
from revtune.layercard.build import measure_signals
from revtune.layercard.options import CardOptions
from revtune.layercard.card import SCHEMA, VERSION, read_card, write_card
from revtune.layercard.coupling import CouplingSums, coupling_matrix, rho, unit_perturbations
from revtune.layercard.ir import overlap_with_ir
from revtune.layercard.placement import GainModel, parse_budget, parse_objective, place
from revtune.layercard.probe import probe_batches, target_modules, task_loss
from revtune.layercard.stats import (InputSums, ModuleSums, cross_fitted, direction, gd_factor,
                                     module_signals)

F64 = torch.float64


def sums_of(x, g, half, gram="never", chunks=1, dtype=F64):
    """Feed (x, g) token rows to the streaming sums in ``chunks`` pieces, as batches would (fp64 sums
    here so closed forms match to 1e-8; the card keeps fp32 sums)."""
    source = InputSums(x.shape[1], gram, dtype)
    module = ModuleSums(source, g.shape[1])
    for rows in np.array_split(np.arange(len(x)), chunks):
        rows = torch.as_tensor(rows)
        source.add(x[rows], half[rows])
        module.add(x[rows], g[rows], half[rows])
        source.settle()
    return module


def spectrum_of(module):
    return module.spectrum(module.source.spectrum_basis(F64), F64)


def signals_of(x, g, half=None, ridge=0.0, steps=10, rank=2, **kw):
    half = torch.arange(len(x)) % 2 == 0 if half is None else half
    return module_signals(spectrum_of(sums_of(x, g, half, **kw)), ridge, steps, rank)


def last_layer_problem(n=2000, d0=6, d1=5, d2=3, seed=0):
    """f(x) = W2 W1 x with squared loss: the last layer's input h, its output gradient g, and the loss."""
    gen = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(d1, d0, generator=gen, dtype=F64), torch.randn(d2, d1, generator=gen, dtype=F64)
    x = torch.randn(n, d0, generator=gen, dtype=F64)
    y = x @ torch.randn(d0, d2, generator=gen, dtype=F64) + 0.3 * torch.randn(n, d2, generator=gen, dtype=F64)
    h = x @ w1.T

    def loss(w):
        return 0.5 * ((h @ w.T - y) ** 2).sum(1).mean()

    return h, h @ w2.T - y, w2, y, loss


# --- closed forms on linear models -------------------------------------------------------------------

def test_exact_least_squares_decrease_is_half_resnorm():
    h, g, w2, y, loss = last_layer_problem()
    best = torch.linalg.lstsq(h, y).solution.T
    assert float(loss(w2) - loss(best)) == pytest.approx(0.5 * signals_of(h, g).res2, rel=1e-8)


def test_best_rank_r_decrease_is_half_top_r_squared_singular_values():
    h, g, w2, y, loss = last_layer_problem(d1=6, d2=4)
    sigma, grad = h.T @ h / len(h), g.T @ h / len(h)
    root_inv = torch.linalg.inv(torch.linalg.cholesky(sigma)).T  # sigma^-1/2 up to a rotation
    u, s, vt = torch.linalg.svd(grad @ root_inv)
    for r in (1, 2, 3):
        left, right = -(u[:, :r] * s[:r]), vt[:r] @ root_inv.T
        decrease = float(loss(w2) - loss(w2 + left @ right))
        assert decrease == pytest.approx(0.5 * signals_of(h, g, rank=r).res2_rank, rel=1e-8)
        gen = torch.Generator().manual_seed(r)
        for _ in range(20):  # no nearby rank-r update does better
            a, b = torch.randn(4, r, generator=gen, dtype=F64), torch.randn(r, 6, generator=gen, dtype=F64)
            nearby = (left + 1e-2 * a) @ (right + 1e-2 * b)
            assert float(loss(w2) - loss(w2 + nearby)) <= decrease + 1e-12


def test_covariance_and_gram_forms_agree():
    gen = torch.Generator().manual_seed(1)
    x, g = torch.randn(40, 60, generator=gen), torch.randn(40, 7, generator=gen)
    half = torch.arange(40) % 3 == 0
    forms = {mode: sums_of(x, g, half, gram=mode, chunks=3) for mode in ("never", "always", "auto")}
    assert forms["always"].source.in_gram_form and not forms["never"].source.in_gram_form
    values = {mode: module_signals(spectrum_of(m), 1e-2, 25, 3).as_dict() for mode, m in forms.items()}
    for key in ("res2", "res2_cf", "res2_rank", "energy", "eff_rank", "gain", "gain_cf", "lam"):
        assert values["always"][key] == pytest.approx(values["never"][key], rel=1e-5, abs=1e-9), key
    assert values["always"]["cond"] == pytest.approx(values["never"]["cond"], rel=1e-3)
    torch.testing.assert_close(direction(spectrum_of(forms["always"]), 1e-2),
                               direction(spectrum_of(forms["never"]), 1e-2), rtol=1e-5, atol=1e-7)
    bigger = sums_of(torch.randn(90, 60, generator=gen), torch.randn(90, 7, generator=gen),
                     torch.arange(90) % 2 == 0, gram="auto", chunks=3)
    assert not bigger.source.in_gram_form  # left the Gram form once N > d_in


def test_cross_fitted_is_nearly_unbiased_where_plug_in_is_not():
    d, d_out, n, reps = 10, 4, 200, 150
    gen = torch.Generator().manual_seed(2)
    b = 0.03 * torch.randn(d_out, d, generator=gen, dtype=F64)
    truth = float((b ** 2).sum())  # Sigma = I, G = -B, no ridge
    plug, cross = [], []
    for _ in range(reps):
        x = torch.randn(n, d, generator=gen, dtype=F64)
        g = -(x @ b.T + torch.randn(n, d_out, generator=gen, dtype=F64))
        spec = spectrum_of(sums_of(x, g, torch.arange(n) % 2 == 0))
        plug.append(float(((spec.gv ** 2).sum(0) / spec.s).sum()))
        cross.append(cross_fitted(spec, 1 / spec.s))
    bias_plug, bias_cross = np.mean(plug) - truth, np.mean(cross) - truth
    assert bias_plug > 3 * truth
    assert abs(bias_cross) < 0.25 * truth + 3 * np.std(cross) / np.sqrt(reps)


def test_gradient_descent_reproduces_budgeted_gain():
    h, g, w2, y, loss = last_layer_problem(d1=5)
    eta = 1 / float(torch.linalg.eigvalsh(h.T @ h / len(h)).max())
    for steps in (1, 7, 60):
        delta = torch.zeros_like(w2, requires_grad=True)
        for _ in range(steps):
            (grad,) = torch.autograd.grad(loss(w2 + delta), delta)
            delta = (delta - eta * grad).detach().requires_grad_(True)
        decrease = float(loss(w2) - loss(w2 + delta.detach()))
        assert decrease == pytest.approx(signals_of(h, g, steps=steps).gain, rel=1e-8)


def test_gd_factor_limits():
    s = torch.tensor([0.0, 1e-300, 0.5, 1.0], dtype=F64)
    assert gd_factor(s, 5).tolist() == pytest.approx([10.0, 10.0, (1 - 0.5 ** 10) / 0.5, 1.0])


@pytest.mark.parametrize("dims, correlation", [(1, 0.6), (1, -0.8), (1, 0.0), (3, 0.5)])
def test_joint_gain_of_two_blocks_lies_inside_the_coupling_bounds(dims, correlation):
    gen = torch.Generator().manual_seed(3)
    n = 3000
    z1 = torch.randn(n, dims, generator=gen, dtype=F64)
    z2 = correlation * z1 + (1 - correlation ** 2) ** 0.5 * torch.randn(n, dims, generator=gen, dtype=F64)
    y = z1 @ torch.randn(dims, 1, generator=gen, dtype=F64) + z2 @ torch.randn(dims, 1, generator=gen,
                                                                                dtype=F64)
    y = y + 0.5 * torch.randn(n, 1, generator=gen, dtype=F64)
    g = -y  # the model predicts 0: the output gradient of 0.5 (f - y)^2 is f - y
    sums, gains = CouplingSums(2), []
    phis = []
    for z in (z1, z2):
        spec = spectrum_of(sums_of(z, g, torch.arange(n) % 2 == 0))
        gains.append(0.5 * module_signals(spec, 0.0, 1, 1).res2)
        phis.append(z @ direction(spec, 0.0).T)
    sums.add(torch.stack(phis))
    r = sums.matrix()
    both = torch.cat([z1, z2], 1)
    joint = float(0.5 * (y ** 2).mean() - 0.5 * ((y - both @ torch.linalg.lstsq(both, y).solution) ** 2).mean())
    total, coupling = sum(gains), rho(r)
    predicted = GainModel(np.array(gains), r, shrink=0.0).predicted([0, 1])
    assert total / (1 + coupling) - 1e-9 <= predicted <= total / (1 - coupling) + 1e-9
    assert joint >= predicted - 1e-9
    if dims == 1:
        assert joint == pytest.approx(predicted, rel=1e-9)
        assert total / (1 + coupling) - 1e-9 <= joint <= total / (1 - coupling) + 1e-9


def test_streaming_equals_all_at_once():
    gen = torch.Generator().manual_seed(4)
    x, g = torch.randn(300, 20, generator=gen), torch.randn(300, 5, generator=gen)
    half = torch.rand(300, generator=gen) < 0.5
    once, streamed = signals_of(x, g, half, ridge=1e-2), signals_of(x, g, half, ridge=1e-2, chunks=13)
    for key, value in once.as_dict().items():
        assert getattr(streamed, key) == pytest.approx(value, rel=1e-5), key


# --- the probe on a tiny transformer against a direct computation -----------------------------------

LABELS = ["a", "b", "c"]
STEPS, RANK = 30, 2


@pytest.fixture(scope="module")
def tiny():
    """A float64 tiny Llama classifier (3 blocks) and three left-padded probe batches."""
    from revtune.models import load_model
    from revtune.training.data import PadCollator

    model = load_model("tiny", "intent", LABELS, dtype=F64, seed=0, tiny_layers=3).model.eval()
    gen = np.random.default_rng(0)
    rows = []
    for _ in range(12):
        ids = gen.integers(3, 250, int(gen.integers(5, 20))).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": int(gen.integers(3))})
    batches = probe_batches(rows, PadCollator(0, "left"), 4, 3, seed=0, device=torch.device("cpu"))
    return model, batches


def card_signals(model, batches, **options):
    per_block = target_modules(model, ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"])
    loss_fn = partial(task_loss, task="intent")
    signals, directions = measure_signals(model, per_block, batches, loss_fn,
                                          CardOptions(eig_dtype="float64", **options), STEPS, RANK)
    return per_block, signals, directions


def direct_sums(model, batches, module):
    """X, G, G_A, G_B of one module from autograd on its weight: the gradient of the summed losses
    of one sequence half is exactly that half's sum of g x^T."""
    weight = module.weight
    weight.requires_grad_(True)
    inputs, sums, counts, seen = [], {True: 0, False: 0}, {True: 0, False: 0}, 0
    handle = module.register_forward_hook(lambda m, a, o: inputs.append(a[0].detach()))
    try:
        for batch in batches:
            data = batch.inputs
            logits = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"]).logits
            per = F.cross_entropy(logits, data["labels"], reduction="none")
            is_a = torch.arange(seen, seen + len(per)) % 2 == 0
            seen += len(per)
            for flag in (True, False):
                (grad,) = torch.autograd.grad(per[is_a == flag].sum(), weight, retain_graph=True)
                sums[flag] = sums[flag] + grad
                counts[flag] += int(data["attention_mask"][is_a == flag].sum())
    finally:
        handle.remove()
        weight.requires_grad_(False)
    x = torch.cat([a.reshape(-1, a.shape[-1])[b.inputs["attention_mask"].reshape(-1).bool()]
                   for a, b in zip(inputs, batches)])
    n = counts[True] + counts[False]
    return (x.numpy(), ((sums[True] + sums[False]) / n).numpy(), (sums[True] / counts[True]).numpy(),
            (sums[False] / counts[False]).numpy())


def expected_signals(x, g, g_a, g_b, ridge=1e-2):
    sigma = x.T @ x / len(x)
    lam = ridge * np.trace(sigma) / len(sigma)
    inverse = np.linalg.inv(sigma + lam * np.eye(len(sigma)))
    s, v = np.linalg.eigh(sigma)
    s = np.clip(s, 0, None)
    q = s / s.max()
    factor = np.where(s > 1e-12 * s.max(), (1 - (1 - q) ** (2 * STEPS)) / np.maximum(s, 1e-300), 2 * STEPS / s.max())
    projected = g @ v
    top = np.sort(np.linalg.eigvalsh(g @ inverse @ g.T))[::-1][:RANK].sum()
    return {"res2": np.trace(g @ inverse @ g.T), "res2_cf": max(0.0, np.trace(g_a @ inverse @ g_b.T)),
            "res2_rank": top, "energy": np.trace(sigma), "cond": (s.max() + lam) / (s.min() + lam),
            "eff_rank": np.trace(sigma) ** 2 / np.trace(sigma @ sigma),
            "gain": 0.5 * (projected ** 2 * factor).sum(),
            "gain_cf": max(0.0, 0.5 * ((g_a @ v) * (g_b @ v) * factor).sum()),
            "direction": -g @ inverse}


@pytest.mark.parametrize("gram", ["never", "always"])
def test_signals_match_a_direct_computation_on_a_tiny_transformer(tiny, gram):
    model, batches = tiny
    per_block, signals, directions = card_signals(model, batches, gram=gram)
    for block, name in ((0, "self_attn.q_proj"), (0, "mlp.up_proj"), (1, "mlp.down_proj"), (2, "self_attn.v_proj")):
        module = dict(per_block[block])[name]
        expected = expected_signals(*direct_sums(model, batches, module))
        got = signals[block][name].as_dict()
        for key in ("res2", "res2_cf", "res2_rank", "energy", "cond", "eff_rank", "gain", "gain_cf"):
            assert got[key] == pytest.approx(expected[key], rel=2e-3, abs=1e-9), (block, name, key)
        np.testing.assert_allclose(directions[(block, name)].numpy(), expected["direction"], rtol=2e-3,
                                   atol=1e-6 * np.abs(expected["direction"]).max())


def test_q_k_v_share_one_input_and_the_mlp_has_two(tiny):
    from revtune.layercard.probe import stream_pass

    model, batches = tiny
    per_block = target_modules(model, ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"])
    stats = stream_pass(model, per_block, [0, 1, 2], batches[:1], partial(task_loss, task="intent"))
    sources = {name: id(stats.modules[(1, name)].source) for name, _ in per_block[1]}
    assert sources["self_attn.q_proj"] == sources["self_attn.k_proj"] == sources["self_attn.v_proj"]
    assert len(set(sources.values())) == 3 and len(stats.inputs) == 9


def test_groups_of_blocks_give_the_same_signals(tiny):
    model, batches = tiny
    _, together, _ = card_signals(model, batches)
    _, apart, _ = card_signals(model, batches, max_bytes=1)  # one block per pass
    for block_together, block_apart in zip(together, apart):
        for name, values in block_together.items():
            for key, value in values.as_dict().items():
                assert getattr(block_apart[name], key) == pytest.approx(value, rel=1e-5), (name, key)


def test_coupling_matches_finite_differences_on_the_weights(tiny):
    model, batches = tiny
    per_block, _, directions = card_signals(model, batches)
    perturbations = unit_perturbations(per_block, directions, torch.device("cpu"))
    r, tokens = coupling_matrix(model, batches[:2], perturbations, eps=1e-3)
    phis = []
    for pairs in perturbations:
        effect = 0
        for sign in (1, -1):
            saved = [module.weight.detach().clone() for module, _ in pairs]
            with torch.no_grad():
                for module, d in pairs:
                    module.weight += sign * 1e-3 * d.to(F64)
                hidden = [model.base_model(input_ids=b.inputs["input_ids"],
                                           attention_mask=b.inputs["attention_mask"]).last_hidden_state
                          for b in batches[:2]]
                for (module, _), weight in zip(pairs, saved):
                    module.weight.copy_(weight)
            rows = torch.cat([h.reshape(-1, h.shape[-1])[b.rows] for h, b in zip(hidden, batches[:2])])
            effect = effect + sign * rows / 2e-3
        phis.append(effect.reshape(-1).numpy())
    phis = np.stack(phis)
    norms = np.linalg.norm(phis, axis=1)
    np.testing.assert_allclose(r, phis @ phis.T / np.outer(norms, norms), atol=1e-6)
    assert tokens == sum(b.n_tokens for b in batches[:2])
    assert np.allclose(np.diag(r), 1) and np.allclose(r, r.T)
    token_r, _ = coupling_matrix(model, batches[:1], perturbations, mode="token")
    assert np.all(np.abs(token_r) <= 1 + 1e-9)


@pytest.mark.parametrize("kind", ["lora", "dora", "bottleneck", "none"])
def test_analytic_parameters_count_what_the_adapter_trains(kind):
    from revtune.adapters import AdapterConfig, attach, layer_map
    from revtune.layercard.cost import analytic_costs
    from revtune.models import load_model

    model = load_model("tiny", "intent", LABELS, seed=0, tiny_layers=2).model
    adapter = AdapterConfig(kind=kind, r=4, alpha=8, bottleneck_dim=16)
    per_block = target_modules(model, ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"])
    expected = [row["params"] for row in analytic_costs(model, per_block, adapter)]
    assert layer_map(attach(model, adapter, "intent")).layer_sizes() == expected


# --- placement on constructed cards -----------------------------------------------------------------

def fake_card(tmp_path, gains, coupling=None, params=None, seconds=None, memory=None, probe=None, name="card"):
    n = len(gains)
    blocks = []
    for i, gain in enumerate(gains):
        row = {key: 1.0 for key in ("res2", "res2_cf", "res2_rank", "energy", "cond", "eff_rank")}
        row.update(gain=1.5 * gain + 0.01 * i, gain_cf=gain, params=params[i] if params else 100,
                   adapter_flops=2 * (params[i] if params else 100), block_flops=1000)
        if seconds:
            row["step_seconds"] = seconds[i]
        if memory:
            row["peak_bytes"] = memory[i]
        if probe:
            row["probe_gain"] = probe[i]
        blocks.append(row)
    data = {"schema": SCHEMA, "version": VERSION,
            "model": {"spec": "fake", "n_layers": n, "hidden_size": 8, "block_norms": [1.0] * n},
            "adapter": {"kind": "lora", "r": 4, "alpha": 8, "targets": ["q_proj"]},
            "task": {"name": "intent"}, "probe": {"tokens": 10}, "blocks": blocks,
            "coupling": {"R": (np.eye(n) if coupling is None else np.asarray(coupling)).tolist(), "rho": 0.0}}
    folder = tmp_path / name
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps(data))
    return read_card(folder)


def test_quality_picks_the_largest_gains_when_uncoupled(tmp_path):
    card = fake_card(tmp_path, [0.1, 0.5, 0.2, 0.9, 0.05, 0.4])
    placement = place(card, "quality", "layers=3")
    assert placement.layers == [1, 3, 5]
    assert placement.ratio == pytest.approx((0.5 + 0.9 + 0.4) / 2.15)
    assert place(card, "quality", "layers=50%").layers == [1, 3, 5]


def test_probe_gains_lead_when_measured_and_informative(tmp_path):
    card = fake_card(tmp_path, [0.9, 0.1, 0.1], probe=[0.0, 0.2, 0.5])
    placement = place(card, "quality", "layers=1")
    assert placement.layers == [2] and placement.gain_source == "probe_gain"
    flat = fake_card(tmp_path, [0.9, 0.1, 0.1], probe=[0.0, 0.0, 0.0], name="flat")
    assert place(flat, "quality", "layers=1").gain_source == "gain_cf"


def test_quality_skips_a_block_that_duplicates_a_chosen_one(tmp_path):
    r = np.eye(4)
    r[2, 3] = r[3, 2] = 0.99  # blocks 2 and 3 do the same thing to the output
    card = fake_card(tmp_path, [0.3, 0.1, 1.0, 0.9], coupling=r)
    assert place(card, "quality", "layers=2").layers == [0, 2]


def test_parameter_budget_is_respected(tmp_path):
    card = fake_card(tmp_path, [0.1, 0.5, 0.2, 0.9], params=[10, 50, 10, 60])
    placement = place(card, "quality", "params=75")
    assert placement.layers == [2, 3] and placement.cost["params"] == 70  # 1 (50) no longer fits


def test_cost_objective_takes_the_shallowest_cut(tmp_path):
    card = fake_card(tmp_path, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert place(card, "cost").layers == [3, 4, 5]
    assert place(card, "cost:0.6").layers == [4, 5]
    spread = fake_card(tmp_path, [1.0, 0.0, 0.0, 0.0, 0.0, 1.0], name="spread")
    assert place(spread, "cost").layers == [0, 5]


def test_time_and_memory_budgets_use_the_lowest_block_plus_increments(tmp_path):
    with pytest.raises(RevtuneError, match="measure-cost"):
        place(fake_card(tmp_path, [1.0, 1.0]), "quality", "time=1")
    card = fake_card(tmp_path, [0.2, 1.0, 0.5, 0.8], seconds=[4.0, 3.0, 2.0, 1.0],
                     memory=[400.0, 300.0, 200.0, 100.0], name="measured")
    placement = place(card, "quality", "time=2.2,memory=2000")
    assert placement.layers == [2, 3]
    assert placement.cost["time"] > 2.0 and placement.cost["memory"] == 200 + 16 * 100


def test_predicted_gain_lies_inside_the_coupling_bounds():
    gen = np.random.default_rng(5)
    for _ in range(20):
        a = gen.normal(size=(5, 12))
        norms = np.linalg.norm(a, axis=1)
        r = a @ a.T / np.outer(norms, norms)
        gains = gen.uniform(0.1, 1, 5)
        coupling = rho(r)
        predicted = GainModel(gains, r, shrink=0.0).predicted(range(5))
        assert gains.sum() / (1 + coupling) - 1e-9 <= predicted
        if coupling < 1:
            assert predicted <= gains.sum() / (1 - coupling) + 1e-9


@pytest.mark.parametrize("objective, budget, message", [
    ("speed", "layers=2", "unknown objective"), ("quality", "", "needs a budget"),
    ("quality", "layer=2", "bad budget"), ("quality", "layers=-1", "> 0"), ("quality", "params=x", "bad budget"),
    ("cost:2", "", "share"), ("quality:0.5", "layers=1", "takes no share"),
    ("quality", "params=1", "no block fits"),
])
def test_bad_placement_requests_are_one_line_errors(tmp_path, objective, budget, message):
    card = fake_card(tmp_path, [0.5, 0.5])
    with pytest.raises(RevtuneError, match=message) as error:
        place(card, objective, budget)
    assert "\n" not in str(error.value)


def test_budget_parsing():
    assert parse_budget("layers=6, params=2e6") == {"layers": (6.0, False), "params": (2e6, False)}
    assert parse_budget("layers=20%") == {"layers": (0.2, True)}
    assert parse_objective("cost") == ("cost", 0.95) and parse_objective("cost:0.9") == ("cost", 0.9)


# --- card files -------------------------------------------------------------------------------------

def test_card_round_trip_writes_json_markdown_and_figure(tmp_path):
    card = fake_card(tmp_path, [0.1, 0.5, 0.2])
    out = tmp_path / "written"
    out.mkdir()
    write_card(out, card.data)
    again = read_card(out)
    assert again.data == json.loads(json.dumps(card.data))
    assert (out / "card.md").read_text().count("\n| ") == 3 + 1
    assert (out / "card.png").stat().st_size > 1000


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "not json {", "invalid JSON"),
    (lambda d: {**d, "schema": "other"}, "schema"),
    (lambda d: {**d, "version": 99}, "version 99 is not supported"),
    (lambda d: {**d, "blocks": d["blocks"][:1]}, "expected 2 blocks"),
    (lambda d: {**d, "coupling": {"R": [[1.0]]}}, "2x2 matrix"),
    (lambda d: {**d, "blocks": [{**d["blocks"][0], "gain": "big"}, d["blocks"][1]]}, r"blocks\[0\].gain"),
    (lambda d: {**d, "model": {**d["model"], "n_layers": 0}}, "positive integer"),
    (lambda d: [1, 2], "schema"),
])
def test_bad_card_files_are_rejected_in_one_line(tmp_path, mutate, message):
    card = fake_card(tmp_path, [0.1, 0.2])
    bad = mutate(card.data)
    (card.path / "card.json").write_text(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(RevtuneError, match=message) as error:
        read_card(card.path)
    assert "\n" not in str(error.value) and "card.json" in str(error.value)


def test_missing_card_is_rejected(tmp_path):
    with pytest.raises(RevtuneError, match="layer card not found"):
        read_card(tmp_path / "nowhere")


def test_overlap_with_ir_uses_the_split_of_the_importance_frequency(tmp_path):
    card = fake_card(tmp_path, [0.9, 0.2, 0.1, 0.8, 0.7, 0.6])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"importance_frequency": [1, 1, 9, 9, 9, 1]}))
    result = overlap_with_ir(card.path, run)
    assert result["ir_layers"] == [2, 3, 4, 5]  # the reference split keeps one layer more
    assert result["card_layers"] == [0, 3, 4, 5]  # as many layers as IR kept
    assert result["overlap"] == 3 and result["shared_layers"] == [3, 4, 5]
    assert result["share_of_ir"] == pytest.approx(3 / 4) and result["jaccard"] == pytest.approx(3 / 5)
    assert overlap_with_ir(card.path, run, budget="layers=1")["card_layers"] == [0]
    (run / "metrics.json").write_text(json.dumps({"importance_frequency": [1, 2]}))
    with pytest.raises(RevtuneError, match="the run has 2 layers"):
        overlap_with_ir(card.path, run)
