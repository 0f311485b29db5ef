"""The principal-axes frame (`--set frame=pca`): frames are proper rotations that turn with the
digit, so a framed map commutes with the data's rotations (exactly for quarter turns about depth);
a framed run trains, checkpoints and resumes as any other; where a frame has no meaning the
run is refused in one line with nothing written."""

from __future__ import annotations

import pytest
import torch

from otzoo import registry
from otzoo.batches import for_pair
from otzoo.config import parse_overrides, resolve
from otzoo.data import DataConfig, load_pair
from otzoo.data.transforms import random_rotations, rotate_volumes
from otzoo.frames import principal_frames, to_frame, turn
from otzoo.loop import run_steps
from otzoo.runs import list_checkpoints, load_checkpoint
from otzoo.train import train
from tests.conftest import TINY, files_under, run_main

QUARTER_TURNS = {"z": [(3, 4)], "3d": [(3, 4), (2, 3), (2, 4)]}  # (H, W), (D, H), (D, W)


def digits(rotation: str, n: int = 12) -> torch.Tensor:
    """Rotated test fives of the tiny preset's grid (8^3)."""
    data = load_pair("3-5", DataConfig(grid=8, max_per_digit=40, rotation=rotation), seed=0)
    return data.y_test[:n]


@pytest.mark.parametrize("rotation", ["z", "3d"])
def test_frames_are_proper_rotations_about_the_data_axes(rotation):
    frames = principal_frames(digits(rotation), rotation)
    eye = torch.eye(3).expand_as(frames)
    assert torch.allclose(frames @ frames.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(frames), torch.ones(len(frames)), atol=1e-5)
    if rotation == "z":  # turns about the depth axis only
        assert torch.allclose(frames[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(len(frames), 3))


def test_the_long_axis_goes_to_height_with_a_positive_third_moment():
    x = -torch.ones(1, 3, 1, 16, 16)
    x[0, :, 0, 7:9, 2:14] = 1.0  # a bar along the width...
    x[0, :, 0, 6:11, 11:14] = 1.0  # ...with a heavy end at large x
    turned, _ = to_frame(x, "z")
    lit = (turned[0, 0, 0] > 0).nonzero().float()  # (row = y, column = x)
    spread = lit.std(dim=0)
    assert spread[0] > 2 * spread[1]  # now along the height
    assert ((lit[:, 0] - lit[:, 0].mean()) ** 3).mean() > 0  # its third moment along y: > 0


@pytest.mark.parametrize("rotation", ["z", "3d"])
def test_quarter_turns_of_a_digit_give_the_same_framed_digit(rotation):
    x = digits(rotation)
    framed, _ = to_frame(x, rotation)
    for dims in QUARTER_TURNS[rotation]:
        turned, _ = to_frame(torch.rot90(x, 1, dims), rotation)
        per_sample = (turned - framed).abs().flatten(1).mean(dim=1)
        if dims == (3, 4):  # about the depth axis: the same voxels are sampled, exactly
            assert per_sample.max() < 1e-4
        else:  # other axes: the three plane turns resample differently
            assert per_sample.median() < 0.06
        assert (framed - x).abs().mean() > 0.1  # the frame does turn them


def test_turning_there_and_back_keeps_the_digit():
    x = digits("z")
    framed, frames = to_frame(x, "z")
    back = turn(framed, frames.transpose(1, 2), "z")
    assert (back - x).abs().mean() < 0.06  # bicubic twice; the background stays -1
    assert (framed - x).abs().mean() > 0.1  # and the frame did turn them
    identity = turn(x, torch.eye(3).expand(len(x), 3, 3), "3d")
    assert torch.allclose(identity, x, atol=1e-5)


@pytest.mark.parametrize("rotation", ["z", "3d"])
def test_turns_match_the_data_rotation_of_the_same_matrix(rotation):
    x = digits("none", 6)
    m = random_rotations(rotation, 6, torch.Generator().manual_seed(0))
    ours = turn(x, m, rotation)
    data_way = rotate_volumes((x + 1) / 2, m) * 2 - 1  # trilinear: close, not equal
    assert (ours - data_way).abs().mean() < 0.08  # bicubic on an 8^3 grid
    assert (ours - x).abs().mean() > 0.15  # a real turn, not the identity


def framed_run(steps: int = 3, frame: str = "pca", rotation: str = "z", solver: str = "otm"):
    items = [f"steps={steps}", "ckpt_every=2", "image_every=0", f"frame={frame}"]
    items.append(f"rotation={rotation}")
    cls = registry.get_solver(solver)
    return resolve(cls, "3-5", "tiny", parse_overrides(items, cls), seed=0)


def test_a_framed_map_commutes_with_quarter_turns_and_a_plain_one_does_not():
    run = framed_run()
    data = load_pair(run.pair, run.data, seed=run.seed)
    solvers = {}
    for frame in ("pca", "none"):
        run = framed_run(frame=frame)
        torch.manual_seed(0)
        solvers[frame] = registry.build_solver(run, data, torch.device("cpu"))
        run_steps(solvers[frame], for_pair(data, 8, 1, torch.device("cpu")), 3)
    x = data.x_test[:8]
    for frame, solver in solvers.items():
        solver.train_mode(False)
        with torch.no_grad():
            moved = solver.transport(x)
            gap = solver.transport(torch.rot90(x, 1, (3, 4))) - torch.rot90(moved, 1, (3, 4))
        assert (moved - x).abs().mean() > 1e-3  # the map moves its inputs
        if frame == "pca":
            assert gap.abs().max() < 1e-4
        else:
            assert gap.abs().max() > 1e-3


def test_a_framed_run_trains_checkpoints_and_resumes_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(framed_run(4), straight, show_progress=False)
    train(framed_run(2), split, show_progress=False)
    train(framed_run(4), split, resume=True, show_progress=False)
    a = load_checkpoint(list_checkpoints(straight)[-1])["state"]
    b = load_checkpoint(list_checkpoints(split)[-1])["state"]
    assert a["steps_done"] == b["steps_done"] == 4
    for name, module in a["modules"].items():
        for key, value in module.items():
            assert torch.equal(value, b["modules"][name][key]), (name, key)


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "frame=pca"],  # unrotated data
        ["--rotation", "z", "--set", "frame=polar"],  # no such frame
    ],
)
def test_a_frame_without_meaning_is_refused_in_one_line(tmp_path, args):
    out = tmp_path / "run"
    code, stdout, err = run_main(
        "train", "--solver", "otm", "--pair", "3-5", *TINY, *args, "--out", str(out)
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "frame" in err
    assert files_under(out) == {}
