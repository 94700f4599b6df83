"""bench.py: FLOP counting and a tiny end-to-end run (figures are printed, never asserted on speed)."""

import json
import os
import subprocess
import sys

import torch
from torch.nn import functional as F

from bench import FlopCounter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flop_counter_counts_convolutions_and_their_gradients():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    weight = torch.randn(5, 3, 3, 3, requires_grad=True)
    forward = 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3  # 2 FLOPs per multiply-add
    with FlopCounter() as counter:
        out = F.conv2d(x, weight, padding=1)
    assert counter.total == forward
    with FlopCounter() as counter:
        out.sum().backward()
    assert counter.total == 2 * forward  # input and weight gradients


def test_bench_runs_a_tiny_workload_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, os.path.join(ROOT, "bench.py"), "--device", "cpu", "--size", "32", "--batch", "4",
               "--channel_max", "16", "--warmup", "1", "--iters", "1", "--gen_iters", "1", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "| mspe, 32, batch 4 |" in result.stdout
    (figures,) = json.loads(out.read_text())["results"]
    assert figures["train_img_s"] > 0 and figures["generate_img_s"] > 0
    assert figures["tflop_per_iter"] > 0
