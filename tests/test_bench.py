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


def run_report(out, cwd):
    command = [sys.executable, os.path.join(ROOT, "bench.py"), "--report", str(out), "--device", "cpu",
               "--warmup", "1", "--iters", "1", "--gen_iters", "1", "--fast", "fp32,plain,channels_last"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_report_without_cuda_says_so_writes_a_readme_table_and_continues_when_interrupted(tmp_path):
    out = tmp_path / "report"
    assert "no CUDA on this machine" in run_report(out, tmp_path)

    report = json.loads((out / "report.json").read_text())
    assert report["finished"]
    assert report["ops"]["upfirdn2d"].startswith("PyTorch reference")
    assert report["cuda_tests"]["skipped"] > 0 and report["cuda_tests"]["failed"] == 0
    # the plain, channels-last modulated convolutions train like the original ones
    assert all(check["ok"] for check in report["device_check"]) and len(report["device_check"]) == 2
    fast = "fp32, plain modconv, custom ops, channels-last"
    assert report["fastest"] == fast
    assert {(r["position"], r["settings"]) for r in report["workloads"]} == {
        (position, settings) for position in ("mspe", "none") for settings in ("fp32, grouped modconv, custom ops", fast)
    }
    markdown = (out / "report.md").read_text()
    assert f"| mspe, 32, batch 4 | {fast} |" in markdown
    assert "MS-PE trains at" in markdown
    assert f"## Every setting tried (fastest: {fast})" in markdown
    assert "aten::" in (out / "profile.txt").read_text()

    # a report killed after its third measurement: the rerun keeps the steps and measurements done
    interrupted = {**report, "finished": False, "measurements": report["measurements"][:3]}
    del interrupted["workloads"]
    (out / "report.json").write_text(json.dumps(interrupted))
    assert "continuing the unfinished report" in run_report(out, tmp_path)
    resumed = json.loads((out / "report.json").read_text())
    assert resumed["finished"] and resumed["measurements"][:3] == report["measurements"][:3]
    assert len(resumed["measurements"]) == len(report["measurements"])
    assert resumed["cuda_tests"] == report["cuda_tests"]
