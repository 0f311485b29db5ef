"""The GPU path (run by benchmarks/gpu_check.sh on a machine with CUDA; skipped elsewhere):
training on CUDA under bf16 autocast for amp-safe solvers, fp32 for the others, the training
sets kept on the device, checkpoints that load back on the CPU."""

from __future__ import annotations

import pytest
import torch

from otzoo.config import resolve
from otzoo.registry import get_solver
from otzoo.runs import list_checkpoints, load_run
from otzoo.train import amp_dtype, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("solver_id", ["not", "not-weak", "otm", "w2gn", "amortized", "pot-linear"])
def test_tiny_run_on_cuda_and_back_on_the_cpu(solver_id, tmp_path):
    cls = get_solver(solver_id)
    run = resolve(cls, "3-5", "tiny", {"steps": 3, "device": "cuda"})
    result = train(run, tmp_path / "run", show_progress=False)
    assert result.solver.device.type == "cuda" and result.steps == 3
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
    expected = torch.bfloat16 if cls.amp_safe else None
    assert amp_dtype("auto", torch.device("cuda"), cls) is expected
    assert list_checkpoints(tmp_path / "run")
    _, cpu_solver, data = load_run(tmp_path / "run", device="cpu")
    with torch.no_grad():
        out = cpu_solver.transport(data.x_test[:2])
    assert out.shape == (2, *data.y_shape) and torch.isfinite(out).all()


def test_training_batches_stay_on_the_device():
    from otzoo.batches import for_pair
    from otzoo.data import DataConfig, load_pair

    data = load_pair("3-5", DataConfig(grid=8, max_per_digit=20))
    batches = for_pair(data, 4, seed=0, device=torch.device("cuda"))
    assert batches.x_all.device.type == "cuda" and batches.x().device.type == "cuda"
