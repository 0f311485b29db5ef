"""ENOT's expectile loss and OT-CFM's minibatch coupling, ODE solvers and diagnostics."""

from __future__ import annotations

import pytest
import torch

from otzoo.errors import ConfigError
from otzoo.registry import get_solver
from otzoo.solver import PairInfo
from otzoo_plugins.enot import expectile_loss
from otzoo_plugins.otcfm import ODE_METHODS, aligned_ot_pairs, ot_pairs

CPU = torch.device("cpu")


def test_expectile_loss_weights_the_two_sides():
    d = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    got = expectile_loss(d, 0.9)
    want = torch.tensor([0.1 * 4, 0.1 * 0.25, 0.0, 0.9 * 0.25, 0.9 * 4])
    assert torch.allclose(got, want)
    assert torch.allclose(expectile_loss(d, 0.5), 0.5 * d.square())


def test_ot_pairs_are_the_exact_plan_of_the_batch():
    """Equal uniform batches: the exact plan is a permutation, so every source appears once
    and the pairing is the one of least total cost (here: shifted copies map back)."""
    torch.manual_seed(0)
    x0 = torch.randn(16, 3)
    perm = torch.randperm(16)
    x1 = x0[perm] + 0.01
    i, j = ot_pairs(x0, x1)
    assert i.tolist() == list(range(16)) and sorted(j.tolist()) == list(range(16))
    assert torch.equal(perm[j], i)  # x0[i] is paired with its own shifted copy


def test_aligned_ot_pairs_find_each_partner_in_the_sources_orientation():
    """Targets that are shuffled sources each turned by a quarter turn about the depth axis:
    with 4 views every source gets its own copy back, turned into its orientation (quarter
    turns of an even grid are exact); plain OT pairs without turning, so its partners differ."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(12, 3, 8, 8, 8, generator=g) * 2 - 1
    perm = torch.randperm(12, generator=g)
    turns = torch.randint(0, 4, (12,), generator=g)
    x1 = torch.stack(
        [torch.rot90(x0[p], int(k), dims=(2, 3)) for p, k in zip(perm, turns, strict=True)]
    )
    i, partners = aligned_ot_pairs(x0, x1, views=4)
    assert i.tolist() == list(range(12)) and torch.allclose(partners, x0, atol=1e-5)
    plain = x1[ot_pairs(x0, x1)[1]]
    assert (plain - x0).abs().amax() > 0.5  # turned copies are not the sources
    # one view turns nothing: every partner is a row of x1, each row once
    one = aligned_ot_pairs(x0, x1, views=1)[1]
    rows = [int((x1 == p).flatten(1).all(dim=1).nonzero()) for p in one]
    assert sorted(rows) == list(range(12))


def test_otcfm_align_views_trains_on_voxels_and_is_refused_where_it_cannot_apply(monkeypatch):
    """With align_views the plan of every ot_batch draws comes from aligned_ot_pairs, training
    stays finite and moves the map; vectors and the independent coupling refuse the key."""
    import otzoo_plugins.otcfm as otcfm
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    calls: list[int] = []

    def spy(x0, x1, views):
        calls.append(views)
        return aligned_ot_pairs(x0, x1, views)

    monkeypatch.setattr(otcfm, "aligned_ot_pairs", spy)
    cls = get_solver("otcfm")
    info, x, y = tiny_problem("voxel")
    config = cls.make_config({"v_base": 4, "v_depth": 1, "align_views": 4, "ot_batch": 8})
    solver = cls(config, info, CPU)
    before = solver.transport(x[:2])
    fit(solver, tensor_batches(x, y, 4), 4)  # two plans of 8 draws, 4 steps of 4 pairs
    after = solver.transport(x[:2])
    assert calls == [4, 4] and torch.isfinite(after).all()
    assert not torch.allclose(before, after)
    with pytest.raises(ConfigError, match="align_views=4 .* vectors; use --set align_views=0"):
        cls(cls.make_config({"align_views": 4}), PairInfo("vector", (2,), (2,)), CPU)
    with pytest.raises(ConfigError, match="coupling=independent; use --set align_views=0"):
        cls(cls.make_config({"align_views": 4, "coupling": "independent"}), info, CPU)
    with pytest.raises(ConfigError, match="align_views"):
        cls.make_config({"align_views": -1})


@pytest.mark.parametrize("method", sorted(ODE_METHODS))
def test_ode_solvers_integrate_a_known_field(method):
    """v(t, x) = c (a constant field): x(1) = x(0) + c for every solver, straightness 0."""
    cls = get_solver("otcfm")
    solver = cls(
        cls.make_config({"ode_method": method, "ode_steps": 3, "hidden": (8,)}),
        PairInfo("vector", (2,), (2,)),
        CPU,
    )
    shift = torch.tensor([1.0, -2.0])
    solver.v = lambda t, x: shift.expand_as(x)
    x = torch.randn(5, 2)
    assert torch.allclose(solver.transport(x), x + shift)
    d = solver.diagnostics(x)
    assert d["nfe"] == 3.0 * ODE_METHODS[method] and d["straightness"] == pytest.approx(
        0.0, abs=1e-10
    )


def test_enot_and_otcfm_report_in_compare_rows(tmp_path):
    from otzoo.compare import CompareRequest, compare

    req = CompareRequest(
        out=tmp_path / "c", solvers=("enot", "otcfm"), pair="gauss:2", preset="tiny",
        values={"steps": 3}, show_progress=False,
    )  # fmt: skip
    rows = compare(req, log=lambda _: None).rows
    assert {"l2_uvp", "cosine"} <= set(rows["enot"])
    assert rows["otcfm"]["nfe"] == 4 * 2 and rows["otcfm"]["straightness"] >= 0


def test_enot_bidirectional_needs_the_gradient_form():
    from otzoo.errors import ConfigError

    with pytest.raises(ConfigError, match="bidirectional=false"):
        get_solver("enot").make_config({"map": "network"})
    with pytest.raises(ConfigError, match="network or gradient"):
        get_solver("enot").make_config({"map": "icnn"})


def test_enot_defaults_to_the_bidirectional_gradient_form():
    """The measured best form on both kinds (benchmarks/w2_bench.md, README), at every preset."""
    from otzoo.config import resolve

    cls = get_solver("enot")
    for pair in ("w2:8", "3-5"):
        for preset in ("tiny", "quick", "full"):
            config = resolve(cls, pair, preset).solver_config
            assert (config.map, config.bidirectional) == ("gradient", True)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_enot_bidirectional_steps_alternate_the_roles(bidirectional, monkeypatch):
    """Odd steps of the bidirectional form map target to source with g's gradient; the one-way
    form always maps with f."""
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    cls = get_solver("enot")
    info, x, y = tiny_problem("vector")
    config = cls.make_config({"map": "gradient", "bidirectional": bidirectional, "hidden": (8,)})
    solver = cls(config, info, CPU)
    mappers: list[str] = []
    names = {id(m): name for name, m in solver.modules.items()}
    real = solver._gradient_losses

    def spy(a, b, mapper, valuer):
        mappers.append(names[id(mapper)])
        return real(a, b, mapper, valuer)

    monkeypatch.setattr(solver, "_gradient_losses", spy)
    fit(solver, tensor_batches(x, y, 8), 4)
    assert mappers == (["f", "g", "f", "g"] if bidirectional else ["f"] * 4)


def test_enot_forms_learn_the_gaussian_map():
    """Both map forms beat the learning test's threshold (the default vector form is tested
    there); the gradient form's g also maps back: grad G(T(x)) ~ x."""
    from otzoo.nets.icnn import potential_gradient
    from tests.conftest import fit, pair_batches
    from tests.test_learning import INFO, PAIR, THRESHOLD, uvp

    cls = get_solver("enot")
    for form in ({"map": "network", "bidirectional": False}, {}):
        torch.manual_seed(0)
        solver = cls(cls.make_config({"hidden": (64, 64), "lr_t": 1e-3, "lr_g": 1e-3, **form}),
                     INFO, CPU)  # fmt: skip
        fit(solver, pair_batches(PAIR, 128), 300)
        assert uvp(solver.transport) < THRESHOLD, form
    x = PAIR.sample_x(2048, torch.Generator().manual_seed(3))
    tx = solver.transport(x)
    back = potential_gradient(solver.modules["g"], tx)
    assert (back - x).square().sum(1).mean() < 0.2 * (tx - x).square().sum(1).mean()


@pytest.mark.parametrize("norm", ["group", "none"])
def test_enot_gradient_form_runs_on_voxels(norm):
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    cls = get_solver("enot")
    info, x, y = tiny_problem("voxel")
    config = cls.make_config({"map": "gradient", "bidirectional": True, "g_base": 4,
                              "g_levels": 1, "g_norm": norm})  # fmt: skip
    solver = cls(config, info, CPU)
    for name in ("f", "g"):  # g_norm reaches both potentials
        has_norm = any(isinstance(m, torch.nn.GroupNorm) for m in solver.modules[name].modules())
        assert has_norm == (norm == "group")
    # identity at init: an unzeroed net's gradient, times the 12,288-voxel cost scale, moved
    # every voxel by ~2 in [-1, 1] data before the first step
    assert torch.allclose(solver.transport(x[:2]), x[:2], atol=1e-5)
    losses = fit(solver, tensor_batches(x, y, 4), 3)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    with torch.no_grad():
        out = solver.transport(x[:2])
    assert out.shape == x[:2].shape and torch.isfinite(out).all()
    assert not torch.allclose(out, x[:2], atol=1e-5)  # and it learns away from it


def test_enot_dense_voxel_potentials_see_the_flat_grid():
    """`voxel_net=dense`: both potentials are MLPs on the flattened grid; T starts at the
    identity and learns away from it, as with the ResNet potentials."""
    from otzoo.nets import MLP, ResNet3D
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    cls = get_solver("enot")
    info, x, y = tiny_problem("voxel")
    config = cls.make_config({"voxel_net": "dense", "hidden": (16, 16), "lr_t": 1e-2})
    solver = cls(config, info, CPU)
    for name in ("f", "g"):
        nets = list(solver.modules[name].modules())
        assert any(isinstance(m, MLP) and m.flatten for m in nets)
        assert not any(isinstance(m, ResNet3D) for m in nets)
    assert torch.allclose(solver.transport(x[:2]), x[:2], atol=1e-5)
    fit(solver, tensor_batches(x, y, 4), 3)
    out = solver.transport(x[:2])
    assert out.shape == x[:2].shape and torch.isfinite(out).all()
    assert not torch.allclose(out, x[:2], atol=1e-5)
    with pytest.raises(ConfigError, match="voxel_net"):
        cls.make_config({"voxel_net": "flat"})


def test_enot_g_patch_embeds_patches_in_g_only_and_is_refused_where_it_cannot_apply():
    """`g_patch`: g (the forward map's value potential) sees 2^3 patches first; f stays a plain
    dense MLP (the map ran away with both patched); the run still starts at the identity and
    learns. Conv potentials and vectors refuse the key."""
    from otzoo.nets import PatchEmbed
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    cls = get_solver("enot")
    info, x, y = tiny_problem("voxel")
    dense = {"voxel_net": "dense", "hidden": (16, 16), "lr_t": 1e-2}
    solver = cls(cls.make_config({**dense, "g_patch": 6}), info, CPU)
    embeds = {name: [m for m in solver.modules[name].modules() if isinstance(m, PatchEmbed)]
              for name in ("f", "g")}  # fmt: skip
    assert embeds["f"] == [] and [m.proj.out_channels for m in embeds["g"]] == [6]
    assert torch.allclose(solver.transport(x[:2]), x[:2], atol=1e-5)
    fit(solver, tensor_batches(x, y, 4), 3)
    out = solver.transport(x[:2])
    assert torch.isfinite(out).all() and not torch.allclose(out, x[:2], atol=1e-5)
    with pytest.raises(ConfigError, match="g_patch=6 .* voxel_net=conv"):
        cls(cls.make_config({"g_patch": 6}), info, CPU)
    vec_info, _, _ = tiny_problem("vector")
    with pytest.raises(ConfigError, match="g_patch=6 .* vectors"):
        cls(cls.make_config({**dense, "g_patch": 6}), vec_info, CPU)
    with pytest.raises(ConfigError, match="g_patch=-1"):
        cls.make_config({"g_patch": -1})
    odd = PairInfo(kind="voxel", x_shape=(3, 9, 9, 9), y_shape=(3, 9, 9, 9))
    with pytest.raises(ConfigError, match=r"g_patch=6: .*divisible.*got \[9, 9, 9\].*g_patch=0"):
        cls(cls.make_config({**dense, "g_patch": 6}), odd, CPU)
    with pytest.raises(ConfigError, match="need a grid divisible by it"):
        PatchEmbed(3, 6).out_features((9, 9, 9))  # the net's own refusal, for other callers


def test_enot_quick_takes_dense_potentials_and_a_cosine_run_on_digit_pairs_only():
    from otzoo.config import resolve

    cls = get_solver("enot")
    run = resolve(cls, "3-5", "quick")
    assert run.solver_config.voxel_net == "dense" and run.train.batch_size == 32
    assert (run.solver_config.g_patch, run.solver_config.expectile) == (24, 1.0)
    assert run.solver_config.color_blind
    assert (run.train.steps, run.train.lr_schedule) == (4000, "cosine")
    assert resolve(cls, "noise-5:16", "quick").solver_config.voxel_net == "conv"
    assert resolve(cls, "3-5", "tiny").solver_config.voxel_net == "conv"
    conv = resolve(cls, "3-5", "quick", {"voxel_net": "conv", "g_patch": 0}).solver_config
    assert (conv.voxel_net, conv.g_patch) == ("conv", 0)


@pytest.mark.parametrize(
    "sid, kind, settings, batch, live",
    [
        ("enot", "voxel", {"g_base": 4, "g_levels": 1, "lr_t": 1e-2}, 4, "f"),
        ("otcfm", "vector", {"hidden": (8,), "ode_steps": 2, "lr": 1e-2}, 8, "v"),
    ],
)
def test_ema_map_lags_the_live_one_and_transports(sid, kind, settings, batch, live):
    """With ema > 0, transport reads the averaged map network (checkpointed), not the live one."""
    import copy

    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    cls = get_solver(sid)
    info, x, y = tiny_problem(kind)
    config = cls.make_config({"ema": 0.5, **settings})
    solver = cls(config, info, CPU)
    avg = solver.modules[f"{live}_ema"]
    start = copy.deepcopy(avg.state_dict())
    fit(solver, tensor_batches(x, y, batch), 3)
    ema, now = avg.state_dict(), solver.modules[live].state_dict()
    assert any(not torch.equal(ema[k], start[k]) for k in ema)  # the average moved ...
    assert any(not torch.equal(ema[k], now[k]) for k in ema)  # ... and lags the live map
    with torch.no_grad():
        out = solver.transport(x[:2])
        avg.load_state_dict(now)  # transport follows the average
        assert not torch.equal(solver.transport(x[:2]), out)
    clone = cls(config, info, CPU)
    clone.load_state_dict(solver.state_dict())
    with torch.no_grad():
        assert torch.equal(clone.transport(x[:2]), solver.transport(x[:2]))


@pytest.mark.parametrize("ot_batch", [0, 64])
def test_otcfm_ot_batch_plans_over_a_larger_draw_used_over_steps(ot_batch, monkeypatch):
    """Targets are shifted copies of the sources, drawn in another order. A plan over all 64
    draws pairs every source with its own copy (regression targets = the shift) and serves
    the next 8 steps of 8 pairs, each source once, then a new plan is drawn; plans over 8
    draws per side (one a step) mostly cannot pair copies."""
    import torch.nn.functional as F

    from otzoo.batches import from_draws

    g = torch.Generator().manual_seed(0)
    pool = torch.randn(64, 3, generator=g)
    order = torch.randperm(64, generator=g)
    draws: list[int] = []

    def draw_x(n: int, _: torch.Generator) -> torch.Tensor:
        draws.append(n)
        return pool[:n]

    batches = from_draws(draw_x, lambda n, _: (pool[order] + 0.01)[:n], 8, 0)
    batches.x_all, batches.y_all = pool, pool + 0.01
    seen: list[torch.Tensor] = []
    sources: list[torch.Tensor] = []

    def spy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(target.detach())
        return ((pred - target) ** 2).mean()

    monkeypatch.setattr(F, "mse_loss", spy)
    cls = get_solver("otcfm")
    config = cls.make_config({"ot_batch": ot_batch, "hidden": (8,)})
    solver = cls(config, PairInfo("vector", (3,), (3,)), CPU)
    real_pairs = solver._pairs

    def spy_pairs(b: object) -> tuple[torch.Tensor, torch.Tensor]:
        x0, x1 = real_pairs(b)
        sources.append(x0)
        return x0, x1

    monkeypatch.setattr(solver, "_pairs", spy_pairs)
    for _ in range(9):
        solver.step(batches)
    assert all(s.shape == (8, 3) for s in seen)
    partnered = [torch.allclose(s, torch.full((8, 3), 0.01), atol=1e-6) for s in seen]
    if ot_batch == 64:
        assert all(partnered) and draws == [64, 64]
        assert torch.equal(torch.cat(sources[:8]), pool)  # every draw of the plan, once
    else:
        assert not all(partnered) and draws == [8] * 9


def test_otcfm_time_film_trains_every_stage_and_checks_its_width():
    """With time_film the voxel field feeds a time embedding to every UNet stage: the films
    start at zero, a few steps move each of them, and the field then depends on t through
    them alone (t's input channel held fixed, two t's through the embedding)."""
    from otzoo.errors import ConfigError
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    cls = get_solver("otcfm")
    with pytest.raises(ConfigError, match="time_film"):
        cls.make_config({"time_film": -1})
    info, x, y = tiny_problem("voxel")
    config = cls.make_config({"time_film": 8, "v_base": 4, "v_depth": 1, "ode_steps": 2})
    solver = cls(config, info, CPU)
    films = solver.v.net.films
    assert len(films) == 3 and all(not f.weight.any() for f in films)
    fit(solver, tensor_batches(x, y, 4), 3)
    assert all(f.weight.abs().sum() > 0 for f in films)
    with torch.no_grad():
        out = solver.transport(x[:2])
        channel = torch.full((2, 1, *x.shape[2:]), 0.5)  # t's input channel held at 0.5
        film0, film1 = (solver.v.film_input(torch.full((2,), t)) for t in (0.0, 1.0))
        v0, v1 = solver.v.net(x[:2], channel, film0), solver.v.net(x[:2], channel, film1)
    assert out.shape == x[:2].shape and torch.isfinite(out).all()
    assert (v0 - v1).abs().max() > 1e-4


@pytest.mark.parametrize("align_views", [0, 4])
def test_otcfm_resumes_mid_plan_exactly(tmp_path, align_views):
    """Rotated digits, a plan of 16 draws per side serving 4 steps of 4 pairs, a checkpoint
    at step 3 (mid-plan): 3 + 3 resumed steps equal 6 straight ones (the plan is re-drawn
    from the batch state saved before its draw, not from the checkpoint's), turned partners
    or not."""
    from otzoo.runs import list_checkpoints, load_checkpoint
    from otzoo.train import train
    from tests.test_train import tiny_run

    cls = get_solver("otcfm")

    def run(steps: int):
        return tiny_run(
            steps, cls, rotation="z", batch_size=4, ot_batch=16, image_every=0,
            align_views=align_views,
        )  # fmt: skip

    a, b = tmp_path / "a", tmp_path / "b"
    train(run(3), a, show_progress=False)
    train(run(6), a, resume=True, show_progress=False)
    train(run(6), b, show_progress=False)
    sa = load_checkpoint(list_checkpoints(a)[-1])["state"]["modules"]["v"]
    sb = load_checkpoint(list_checkpoints(b)[-1])["state"]["modules"]["v"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_otcfm_hue_plane_reaches_the_velocity():
    """`v_hue_plane`: the voxel velocity's head gives the two plane numbers (UNet3D's tests
    check the plane itself); the field still trains and transports; the quick preset uses it."""
    from otzoo.config import resolve
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, tensor_batches

    cls = get_solver("otcfm")
    assert resolve(cls, "3-5", "quick").solver_config.v_hue_plane
    for pair in ("noise-5:16", "gray-color"):  # no digit's hue in the source to keep
        assert not resolve(cls, pair, "quick").solver_config.v_hue_plane
    info, x, y = tiny_problem("voxel")
    settings = {"v_hue_plane": True, "v_base": 4, "v_depth": 1, "ode_steps": 2}
    solver = cls(cls.make_config(settings), info, CPU)
    assert solver.v.net.hue_plane and solver.v.net.head.out_channels == 2
    fit(solver, tensor_batches(x, y, 4), 2)
    with torch.no_grad():
        out = solver.transport(x[:2])
    assert out.shape == x[:2].shape and torch.isfinite(out).all()
    assert (out - x[:2]).abs().max() > 0


def test_enot_hue_plane_restricts_both_map_forms():
    """`t_hue_plane`: the gradient map's move (forward, and the inverse map's from y) is
    projected onto the input's hue plane, so after training steps it lies there, where the
    unprojected gradient's does not; the network map gets the two-number head; vectors are
    untouched; the quick preset uses it on digit pairs only."""
    from otzoo.config import resolve
    from otzoo.testing import tiny_problem
    from tests.conftest import fit, off_hue_plane, one_colored_blobs, tensor_batches

    cls = get_solver("enot")
    assert resolve(cls, "3-5", "quick").solver_config.t_hue_plane
    for pair in ("noise-5:16", "gray-color"):  # no digit's hue in the source to keep
        assert not resolve(cls, pair, "quick").solver_config.t_hue_plane
    info, x, y = one_colored_blobs()
    tiny = {"g_base": 4, "g_levels": 1, "t_base": 4, "t_depth": 1, "lr_t": 1e-2, "lr_g": 1e-2}
    off = {}
    for plane in (False, True):
        torch.manual_seed(0)
        solver = cls(cls.make_config({**tiny, "t_hue_plane": plane}), info, CPU)
        fit(solver, tensor_batches(x, y, 4), 4)
        moves = solver.transport(x) - x
        inverse = solver._gradient_map(solver.modules["g"], y, create_graph=False) - y
        assert torch.isfinite(moves).all() and moves.abs().max() > 1e-4
        off[plane] = (off_hue_plane(moves.detach(), x), off_hue_plane(inverse.detach(), y))
    assert max(off[True]) < 1e-4 < min(off[False]), off
    network = {**tiny, "t_hue_plane": True, "map": "network", "bidirectional": False}
    assert cls(cls.make_config(network), info, CPU).modules["T"].head.out_channels == 2
    vector = cls(
        cls.make_config({"t_hue_plane": True, "hidden": (8,)}), tiny_problem("vector")[0], CPU
    )
    assert not vector.hue_plane


@pytest.mark.parametrize("sid", ["enot", "amortized", "otm"])
def test_color_blind_potentials_treat_every_color_alike(sid):
    """`color_blind`: after training steps the potential scores a red sample and the same shape
    in green (rgby green is red with the first two channels swapped) alike, since it reads
    hue-plane coordinates; so where the map is a potential's gradient (enot, amortized) mapping
    the green sample gives the red one's output with the channels swapped: what the map learns
    of a shape it applies in every color, and a stroke it adds takes the input's own color. The
    same solver on RGB potentials breaks both; an icnn potential (no longer convex on those
    coordinates) is refused."""
    from otzoo.nets.unet3d import ColorBlind
    from tests.conftest import fit, one_colored_blobs, tensor_batches

    cls = get_solver(sid)
    info, x, y = one_colored_blobs()
    tiny, potential = {
        "enot": ({"voxel_net": "dense", "hidden": (16, 16), "lr_t": 1e-2, "lr_g": 1e-2}, "g"),
        "amortized": ({"f_base": 4, "f_levels": 1, "h_base": 4, "h_depth": 1, "lr": 1e-2}, "f"),
        "otm": ({"psi_base": 4, "psi_levels": 1, "t_base": 4, "t_depth": 1}, "psi"),
    }[sid]
    red = x[:1]  # sample 0 is red; swapping channels 0 and 1 paints it green
    green = red[:, [1, 0, 2]]
    gaps = {}
    for blind in (False, True):
        torch.manual_seed(0)
        solver = cls(cls.make_config({**tiny, "color_blind": blind}), info, CPU)
        nets = [m for net in solver.modules.values() for m in net.modules()]
        assert any(isinstance(m, ColorBlind) for m in nets) == blind
        fit(solver, tensor_batches(x, y, 4), 3)
        with torch.no_grad():
            score = solver.modules[potential]
            gaps[blind] = [float((score(red) - score(green)).abs().max())]
        if sid != "otm":  # otm's map is a network of its own, not the potential's gradient
            out_red, out_green = solver.transport(red).detach(), solver.transport(green).detach()
            assert torch.isfinite(out_red).all() and (out_red - red).abs().max() > 1e-4
            gaps[blind].append(float((out_red[:, [1, 0, 2]] - out_green).abs().max()))
    assert max(gaps[True]) < 1e-4 < min(gaps[False]), gaps
    if sid == "amortized":
        with pytest.raises(ConfigError, match="color_blind=true .* icnn"):
            cls(cls.make_config({"color_blind": True, "potential": "icnn"}), info, CPU)


@pytest.mark.parametrize("sid", ["enot", "amortized", "otm"])
def test_color_blind_leaves_gray_grids_and_vectors_unwrapped(sid):
    """A one-channel grid or a vector has no hue plane: `color_blind` wraps no potential there
    (one rule, `ColorBlind.applies`, for every solver that takes the key)."""
    from otzoo.nets.unet3d import ColorBlind

    cls = get_solver(sid)
    tiny = {
        "enot": {"voxel_net": "dense", "hidden": (8,)},
        "amortized": {"f_base": 4, "f_levels": 1, "h_base": 4, "h_depth": 1, "hidden": (8,)},
        "otm": {"psi_base": 4, "psi_levels": 1, "t_base": 4, "t_depth": 1, "hidden": (8,)},
    }[sid]
    cases = {
        PairInfo("voxel", (3, 8, 8, 8), (3, 8, 8, 8)): True,
        PairInfo("voxel", (1, 8, 8, 8), (1, 8, 8, 8)): False,
        PairInfo("vector", (3,), (3,)): False,
    }
    for info, wrapped in cases.items():
        solver = cls(cls.make_config({**tiny, "color_blind": True}), info, CPU)
        nets = [m for net in solver.modules.values() for m in net.modules()]
        assert any(isinstance(m, ColorBlind) for m in nets) == wrapped, info
