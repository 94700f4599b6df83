"""benchmarks/gpu_run.sh rehearsed on the CPU at a tiny size: it installs a carried wheel, runs the
GPU report within its budget and the evidence in the time left, and brings back what the device's
limits let through (at most 8 files, each under 16 MiB). The budget being honoured is asserted
with a generous margin: that is the script keeping its limits, not a speed claim."""

import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile

from checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_BUDGET_S = 105
REPORT_BUDGET_S = 40
# what the machine may add to the total: starting Python, the last unit of work, packing
MARGIN_S = 30
# a budget that cuts the report: the first candidate times until its deadline, what follows is left out
BENCH_ARGS = "--warmup 1 --iters 100000 --gen_iters 1 --fast fp32,plain"
EVIDENCE_ARGS = "--iter 2 --batch 4 --size 16 --channel_max 16 --latent 16 --n_mlp 1 --images 32 --n 8 --step 2"


def probe_wheel(folder):
    """A wheel of one pure module, gpu_run_probe, standing in for the carried lmdb wheel."""
    info = "gpu_run_probe-0.1.dist-info"
    files = {
        "gpu_run_probe.py": "INSTALLED = True\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpu-run-probe\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    folder.mkdir()
    with zipfile.ZipFile(folder / "gpu_run_probe-0.1-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


def unpack(archive_path, folder):
    """Extract a .tar.gz as the next session would, with tarfile's safe filter where it has one."""
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive_path) as archive:
        archive.extractall(folder, **safe)


def test_gpu_run_brings_back_the_report_and_the_evidence_within_its_budget_and_the_devices_limits(tmp_path):
    out, work, site, wheels = tmp_path / "out", tmp_path / "work", tmp_path / "site", tmp_path / "wheels"
    probe_wheel(wheels)
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "TOTAL_BUDGET_S": str(TOTAL_BUDGET_S),
        "REPORT_BUDGET_S": str(REPORT_BUDGET_S),
        "REPORT_GRACE_S": "10",
        "EVIDENCE_MIN_S": "5",
        "EVIDENCE_KILL_S": "5",
        "PACK_S": "10",
        "PART_KIB": "64",  # the tiny checkpoints come back in parts, as 64 px ones do in 15 MiB parts
        "WORK_DIR": str(work),
        "SITE_DIR": str(site),
        "BENCH_ARGS": BENCH_ARGS,
        "EVIDENCE_ARGS": EVIDENCE_ARGS,
    }
    script = os.path.join(ROOT, "benchmarks", "gpu_run.sh")
    started = time.perf_counter()
    result = subprocess.run(
        ["bash", script, str(out), str(wheels)], capture_output=True, text=True, env=environment, timeout=600
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert seconds <= TOTAL_BUDGET_S + MARGIN_S, f"gpu_run.sh took {seconds:.0f} s of a {TOTAL_BUDGET_S} s budget"
    assert (site / "gpu_run_probe.py").is_file()  # the carried wheel, installed

    # within the device's limits: at most 8 plain files, none 16 MiB or more, no folders
    returned = sorted(path.name for path in out.iterdir())
    assert len(returned) <= 8 and all((out / name).is_file() for name in returned), returned
    assert all((out / name).stat().st_size < 16 * 2**20 for name in returned)
    parts = [name for name in returned if name.startswith("checkpoints.tar.gz.part-")]
    assert returned == ["bench_report.tar.gz", *parts, "evidence.tar.gz", "gpu_run.log"] and len(parts) >= 2
    log = (out / "gpu_run.log").read_text()
    assert "stages: wheels " in log and "brought back in" in log and "cat checkpoints.tar.gz.part-*" in log

    back = tmp_path / "back"
    unpack(out / "bench_report.tar.gz", back)
    unpack(out / "evidence.tar.gz", back)
    joined = tmp_path / "checkpoints.tar.gz"  # cat checkpoints.tar.gz.part-* > checkpoints.tar.gz
    joined.write_bytes(b"".join((out / name).read_bytes() for name in parts))
    unpack(joined, back)

    # the report ended within its budget, holding what it measured (mspe with the original settings,
    # timed to its deadline, unless the pytest calls took the budget on a loaded machine) and what the
    # budget left out
    report = json.loads((back / "bench_report" / "report.json").read_text())
    assert not report["finished"]
    (call,) = report["calls"]
    assert call["budget_s"] == REPORT_BUDGET_S and call["spent_s"] <= REPORT_BUDGET_S
    left_out = {entry["unit"] for entry in call["left_out"]}
    for key, unit in (("parity_test", "the CPU parity check"), ("cuda_tests", "the CUDA tests")):
        assert report[key]["returncode"] == 0 or unit in left_out
    for measured in report["measurements"]:
        assert measured["settings"].startswith("fp32, grouped modconv") and measured["iters"] < measured["iters_asked"]
    assert "profile" in left_out
    markdown = (back / "bench_report" / "report.md").read_text()
    assert "not measured (budget)" in markdown and "Not measured (budget); the same command continues" in markdown
    assert "1/6 custom ops" in (back / "bench_report" / "bench.log").read_text()  # bench.py's output

    # the evidence: report, tables, pictures, per-run figures, and generator-only final checkpoints
    evidence = back / "evidence" / "gpu"
    for name in "report.md runs.csv summary.csv samples.png shift_mspe.gif runs/mspe-s0.json".split():
        assert (evidence / name).is_file(), name
    assert "evidence: " in (evidence / "runs" / "evidence.log").read_text()  # evidence.py's output
    checkpoints = sorted(back.glob("checkpoint/*/000002.pt"))
    assert [path.parent.name.split("-")[2] for path in checkpoints] == ["mspe", "none"]
    for path in checkpoints:
        assert set(load_checkpoint(str(path))) == {"g_ema", "args"}
