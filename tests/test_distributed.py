"""Data-parallel training: two CPU processes (gloo) end with identical weights; rank 0 writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_cpu_ranks_end_with_identical_weights(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    res = subprocess.run(
        [*cmd, str(WORKER), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for net in ("T", "f"):
        assert all(torch.equal(w0[net][k], w1[net][k]) for k in w0[net]), net
    # the map's zero-initialised head moved, so equal weights are not equal by construction
    assert w0["T"]["head.weight"].abs().sum() > 0
    run = tmp_path / "run"
    assert (run / "ckpt" / "step_0000003.pt").is_file() and (run / "metrics.json").is_file()
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes
