"""benchmarks/bench.py, measure.py and gpu_report.py: the workloads, FLOP counting, a tiny
end-to-end run and the GPU report (figures are printed, never asserted on speed)."""

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from torch.nn import functional as F

from benchmarks import bench, gpu_report, measure
from checkpoint import model_config
from model import Generator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flop_counter_counts_convolutions_and_their_gradients():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    weight = torch.randn(5, 3, 3, 3, requires_grad=True)
    forward = 2 * 2 * 5 * 8 * 8 * 3 * 3 * 3  # 2 FLOPs per multiply-add
    with measure.FlopCounter() as counter:
        out = F.conv2d(x, weight, padding=1)
    assert counter.total == forward
    with measure.FlopCounter() as counter:
        out.sum().backward()
    assert counter.total == 2 * forward  # input and weight gradients


def test_the_command_line_chooses_the_reference_workloads_or_a_single_one():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # no tensor is made: no GPU needed
    reference = [(config, batch) for config, batch, _ in measure.REFERENCE]
    assert [measure.workload_label(*workload) for workload in reference] == [
        "none, 256, batch 16",
        "mspe, 256, batch 16",
        "none, 1024, batch 4",
        "mspe, 1024, batch 4",
    ]
    assert measure.workloads(bench.parse_args([]), cuda) == reference
    # the other model flags apply to the reference workloads, whose figures then no longer compare
    narrow = measure.workloads(bench.parse_args(["--channel_max", "256"]), cuda)
    assert narrow == [({**config, "channel_max": 256}, batch) for config, batch in reference]
    assert measure.reference_figures(*reference[1]) == measure.REFERENCE[1][2]
    assert measure.reference_figures(*narrow[1]) is None
    # --size, --batch or --position (in any spelling): one workload of every model flag, MS-PE unless --position
    (single,) = measure.workloads(bench.parse_args(["--batch", "8", "--arch", "swagan", "--latent", "64"]), cuda)
    assert single == (model_config({"arch": "swagan", "latent": 64, "position": "mspe"}), 8)
    assert measure.workload_label(*single) == "swagan mspe, 256, batch 8"
    assert measure.workloads(bench.parse_args(["--pos=none"]), cuda) == [(model_config({"position": "none"}), 16)]
    # the alias-free generators have their own input: no MS-PE unless asked for (then refused)
    (alias_free,) = measure.workloads(bench.parse_args(["--arch", "stylegan3-t", "--size", "32"]), cuda)
    assert alias_free == (model_config({"arch": "stylegan3-t", "size": 32}), 16)
    # no GPU: a tiny stand-in, with the model flags given
    (tiny,) = measure.workloads(bench.parse_args(["--device", "cpu", "--channel_max", "16"]), cpu)
    assert tiny == (model_config({"size": 32, "position": "mspe", "channel_max": 16}), 4)


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--iters 0", "argument --iters: must be at least 1, not 0"),
        ("--warmup -1", "--warmup must be 0 or more, not -1"),
        ("--arch ddpm", "--arch ddpm is timed by --diffusion"),
        ("--diffusion --arch stylegan3-t", "--diffusion times the diffusion model, not --arch stylegan3-t"),
        ("--diffusion --compile --report out", "which does not read --compile, --report"),
    ],
)
def test_a_count_out_of_range_or_a_flag_the_workload_does_not_read_is_refused(flags, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(flags.split())
    assert message in capsys.readouterr().err


def test_a_model_that_cannot_be_built_says_which_and_how_to_fix_it():
    config = model_config({"arch": "stylegan3-t", "position": "mspe", "size": 32})
    with pytest.raises(SystemExit, match="arch stylegan3-t.*--position none"):
        measure.training_step(config, torch.device("cpu"), measure.ORIGINAL)


def test_bench_runs_a_tiny_workload_and_writes_json(tmp_path):
    out = tmp_path / "figures" / "bench.json"  # its folder is made
    command = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "bench.py"),
        *"--device cpu --size 32 --batch 4 --channel_max 16 --warmup 1 --iters 1 --gen_iters 1".split(),
        *"--json".split(),
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "| mspe, 32, batch 4 |" in result.stdout
    (figures,) = json.loads(out.read_text())["results"]
    assert figures["model"] == model_config({"size": 32, "position": "mspe", "channel_max": 16})
    assert figures["train_img_s"] > 0 and figures["generate_img_s"] > 0
    assert figures["tflop_per_iter"] > 0


def run_report(out, cwd):
    command = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "bench.py"),
        "--report",
        str(out),
        *"--device cpu --warmup 1 --iters 1 --gen_iters 1 --fast fp32,plain,channels_last".split(),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_report_without_cuda_says_so_writes_a_readme_table_and_continues_when_interrupted(tmp_path):
    out = tmp_path / "report"
    assert "no CUDA on this machine" in run_report(out, tmp_path)

    report = json.loads((out / "report.json").read_text())
    assert report["finished"]
    assert report["ops"]["upfirdn2d"].startswith("PyTorch reference")
    # every CUDA test ran, and skipped: the kernels' and filtered_lrelu's (step 1), the parity test's (step 2)
    cuda_tests, parity_test = report["cuda_tests"], report["parity_test"]
    for tests in (cuda_tests, parity_test):
        assert tests["skipped"] > 0 and tests["failed"] == 0 and tests["failed_tests"] == {}
    assert all(name in cuda_tests["output"] for name in ("test_ops.py", "test_stylegan3.py"))
    assert "test_cuda_parity.py" in parity_test["output"] and "test_cuda_parity.py" not in cuda_tests["output"]
    fast = "fp32, plain modconv, custom ops, channels-last"
    assert report["fastest"] == fast
    assert {(r["model"]["position"], r["settings"]) for r in report["workloads"]} == {
        (position, settings)
        for position in ("mspe", "none")
        for settings in ("fp32, grouped modconv, custom ops", fast)
    }
    markdown = (out / "report.md").read_text()
    assert "## CUDA tests\n" in markdown and f"Result: {cuda_tests['summary']}\n" in markdown
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


def test_report_goes_on_past_a_failing_setting_and_times_references_when_the_cuda_tests_fail(tmp_path, monkeypatch):
    drifting = "tests/test_cuda_parity.py::test_fp32_training_on_the_gpu_follows_the_cpu[plain-channels-last]"
    drift = "AssertionError: the GPU's weights drift from the CPU's: largest weight difference 3.10e-02"
    failed_tests = {
        "passed": 3,
        "failed": 1,
        "skipped": 0,
        "error": 0,
        "returncode": 1,
        "summary": "1 failed, 3 passed",
        "failed_tests": {drifting: drift},
        "output": "",
    }
    passed_tests = {
        **failed_tests,
        "passed": 4,
        "failed": 0,
        "returncode": 0,
        "summary": "4 passed",
        "failed_tests": {},
    }
    monkeypatch.setattr(
        gpu_report,
        "run_cuda_tests",
        lambda paths, ignore=(), timeout=None: failed_tests if paths == [gpu_report.PARITY_TESTS] else passed_tests,
    )
    monkeypatch.setattr(gpu_report, "profile", lambda *args: None)
    out_of_memory = [True]
    ops_forced_ref = []

    def fake_measure(config, batch, settings, args, device, deadline=None):
        if settings["channels_last"] and out_of_memory[0]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        ops_forced_ref.append(settings["impl"] == "ref")
        speed = 20.0 if settings["channels_last"] else 10.0
        return {
            "model": config,
            "batch": batch,
            "settings": measure.describe(settings),
            "train_img_s": speed,
            "s_per_kimg": 1000 / speed,
            "peak_gib": 1.0,
            "tflop_per_iter": 0.1,
            "tflops": 1.0,
            "mfu": 0.01,
            "generate_img_s": 50.0,
        }

    monkeypatch.setattr(gpu_report, "measure_training", fake_measure)
    monkeypatch.setattr(gpu_report, "measure_generation", fake_measure)
    out = tmp_path / "report"
    args = ["--report", str(out), "--device", "cpu", "--fast", "fp32,plain,channels_last", "--fast", "fp32,plain"]
    report = gpu_report.run(bench.parse_args(args), torch.device("cpu"))

    # the labels say what ran: the references, once the CUDA tests have failed
    failing, plain = "fp32, plain modconv, reference ops, channels-last", "fp32, plain modconv, reference ops"
    assert report["fastest"] == plain
    (failure,) = [r for r in report["measurements"] if "error" in r]
    assert failure["settings"] == failing
    assert failure["error"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert ops_forced_ref and all(ops_forced_ref)
    markdown = (out / "report.md").read_text()
    assert f"| mspe, 32, batch 4 | {failing} | failed: OutOfMemoryError: CUDA out of memory." in markdown
    assert "The CUDA tests did not pass (pytest exit 1)" in markdown
    # the report records which CUDA tests failed, and their messages (the parity test's carry its figures)
    assert report["parity_test"]["failed_tests"] == {drifting: drift}
    assert f"- failed: `{drifting}`: {drift}" in markdown and "Result: 1 failed, 3 passed" in markdown
    assert "fp32, grouped modconv, reference ops" in {r["settings"] for r in report["workloads"]}

    # an interrupted report measures its failed settings again
    (out / "report.json").write_text(json.dumps({**report, "finished": False}))
    out_of_memory[0] = False
    resumed = gpu_report.run(bench.parse_args(args), torch.device("cpu"))
    assert resumed["fastest"] == failing
    assert not any("error" in r for r in resumed["measurements"])


def test_the_cuda_tests_are_every_test_marked_cuda_and_their_failures_are_recorded(tmp_path):
    (tmp_path / "test_stand_in.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.cuda\ndef test_passes():\n    pass\n\n"
        "@pytest.mark.cuda\ndef test_drifts():\n    assert 1.0 < 0.5, 'the GPU drifts by 1.00e+00'\n\n"
        "def test_not_a_cuda_test():\n    pass\n"
    )
    tests = gpu_report.run_cuda_tests([str(tmp_path)])
    assert (tests["passed"], tests["failed"], tests["skipped"], tests["error"]) == (1, 1, 0, 0)
    assert tests["returncode"] == 1 and tests["summary"].startswith("1 failed, 1 passed, 1 deselected")
    ((test_id, message),) = tests["failed_tests"].items()  # the id is relative to pytest's rootdir
    assert test_id.endswith("test_stand_in.py::test_drifts") and message == "AssertionError: the GPU drifts by 1.00e+00"


def test_compiled_settings_compile_generation_and_every_workload_anew(monkeypatch):
    """Eagerly, generation at 256 px is bound by the Python cost of its ~640 small ops on a GPU,
    so a compiled setting's generation figure must come from a compiled g_ema (eval mode). And
    a report measures several compiled workloads in one process: dynamo's limit on graphs per
    function (here 4, fewer than two workloads build) must not turn a later one eager."""
    dynamo_config = pytest.importorskip("torch._dynamo.config")
    if not hasattr(dynamo_config, "fail_on_recompile_limit_hit"):
        pytest.skip(f"torch {torch.__version__} cannot fail on dynamo's recompile limit")
    compiled = []
    compile_function = torch.compile

    def compile_for_the_test(module, **kwargs):
        compiled.append(module)
        return compile_function(module, backend="eager")  # dynamo's tracing without code generation

    monkeypatch.setattr(torch, "compile", compile_for_the_test)
    args = bench.parse_args(["--device", "cpu", "--warmup", "1", "--iters", "1", "--gen_iters", "1"])
    for position in ("none", "mspe"):
        config = model_config({"size": 32, "position": position, "channel_max": 16})
        with dynamo_config.patch(recompile_limit=4, fail_on_recompile_limit_hit=True):
            figures = measure.measure(config, 2, bench.fast_settings("fp32,plain,compile"), args, torch.device("cpu"))
        assert figures["settings"] == "fp32, plain modconv, custom ops, compiled" and figures["generate_img_s"] > 0
    assert [module.training for module in compiled if isinstance(module, Generator)] == [True, False] * 2


class StandIns:
    """bench's pytest calls, measurements and profile replaced by stand-ins that advance the
    budget's clock by `seconds` of their kind ('tests', 'training', 'generation'); `ran` lists what
    ran, in order."""

    def __init__(self, monkeypatch):
        self.clock = 0.0
        self.seconds = {"tests": 10, "training": 20, "generation": 5}
        self.ran = []
        monkeypatch.setattr(gpu_report.Budget, "clock", staticmethod(lambda: self.clock))
        monkeypatch.setattr(gpu_report, "run_cuda_tests", self.run_tests)
        monkeypatch.setattr(gpu_report, "measure_training", self.measure_function("training"))
        monkeypatch.setattr(gpu_report, "measure_generation", self.measure_function("generation"))
        monkeypatch.setattr(gpu_report, "profile", lambda *args: self.ran.append("profile"))

    def run_tests(self, paths, ignore=(), timeout=None):
        self.ran.append("parity check" if paths == [gpu_report.PARITY_TESTS] else "CUDA tests")
        self.clock += self.seconds["tests"]
        counts = {"passed": 1, "failed": 0, "skipped": 0, "error": 0}
        return {**counts, "returncode": 0, "summary": "1 passed", "failed_tests": {}, "output": "", "seconds": 10}

    def measure_function(self, kind):
        def stand_in(config, batch, settings, args, device, deadline=None):
            seconds = self.seconds[kind]
            self.ran.append((kind, config["size"], config["position"], measure.describe(settings)))
            self.clock += seconds
            figures = {"model": config, "batch": batch, "settings": measure.describe(settings)}
            figures.update(seconds=seconds, setup_s=seconds / 2, shortest_s=seconds)
            if kind == "generation":
                return {**figures, "generate_img_s": 50.0, "gen_iters": 2, "gen_iters_asked": 2}
            speed = 20.0 if settings["channels_last"] else 10.0
            return {
                **figures,
                **{"train_img_s": speed, "s_per_kimg": 1000 / speed, "peak_gib": 1.0, "tflop_per_iter": 0.1},
                **{"tflops": 1.0, "mfu": 0.01, "iters": 32, "iters_asked": 32},
            }

        return stand_in


def test_a_budget_runs_the_steps_in_order_of_value_and_the_same_command_continues(tmp_path, monkeypatch):
    """--budget_s with stand-ins that advance a clock: the units run in order of value (CUDA tests,
    parity check, candidates, the trial's size, larger workloads, generation, profile), each one
    only if its estimate fits the time left, the report ends before its budget saying what it
    left out, and the same command continues with exactly that."""
    loads = [
        (model_config({"size": size, "position": position, "channel_max": 32}), 4)
        for size in (32, 64)
        for position in ("none", "mspe")
    ]
    monkeypatch.setattr(gpu_report, "tiny_workloads", lambda args: loads)
    ran = StandIns(monkeypatch).ran
    out = tmp_path / "report"
    original, plain = "fp32, grouped modconv, custom ops", "fp32, plain modconv, custom ops"
    fast = f"{plain}, channels-last"
    args = ["--report", str(out), "--device", "cpu", "--fast", "fp32,plain", "--fast", "fp32,plain,channels_last"]

    report = gpu_report.run(bench.parse_args([*args, "--budget_s", "100"]), torch.device("cpu"))
    # tests, parity check, mspe 32 with the original settings (first: the row that compares with
    # the original code's) and the two candidates fit; none 32 (20 s each) did not, nor any 64 px
    # workload; a generation estimated shorter still ran
    assert ran == [
        "CUDA tests",
        "parity check",
        ("training", 32, "mspe", original),
        ("training", 32, "mspe", plain),
        ("training", 32, "mspe", fast),
        ("generation", 32, "none", original),
    ]
    assert not report["finished"] and report["fastest"] == fast
    (call,) = report["calls"]
    assert call["budget_s"] == 100 and call["spent_s"] <= 100
    left_out = [entry["unit"] for entry in call["left_out"]]
    assert left_out[0] == f"training: none, 32, batch 4, {original}" and left_out[-1] == "profile"
    assert f"training: mspe, 64, batch 4, {fast}" in left_out
    markdown = (out / "report.md").read_text()
    assert f"| none, 64, batch 4 | {original} | not measured (budget) |" in markdown
    assert f"| mspe, 32, batch 4 | {original} | 10.0 |" in markdown and "| not measured (budget) | - |" in markdown
    assert "## Profile\n\nNot measured (budget)." in markdown

    # the same command continues: nothing measured twice, what was left out in order of value
    ran.clear()
    resumed = gpu_report.run(bench.parse_args([*args, "--budget_s", "1000"]), torch.device("cpu"))
    training = [unit for unit in ran if unit[0] == "training"]
    assert training == [
        ("training", 32, "none", original),
        ("training", 32, "none", fast),
        ("training", 64, "mspe", original),
        ("training", 64, "mspe", fast),
        ("training", 64, "none", original),
        ("training", 64, "none", fast),
    ]
    assert ran[: len(training)] == training and ran[-1] == "profile"
    assert len([unit for unit in ran if unit[0] == "generation"]) == 7
    assert resumed["finished"] and [call["budget_s"] for call in resumed["calls"]] == [100, 1000]
    assert "not measured" not in (out / "report.md").read_text()


def test_a_first_measurement_starts_only_with_the_finishing_allowance_left(tmp_path, monkeypatch):
    """Before anything is timed, a measurement's start (building the model, its first iteration)
    cannot stop at the deadline: it begins only with the finishing allowance (a tenth of a 40 s
    budget) left before the deadline, so that a start of up to twice that still ends in time."""
    stand_ins = StandIns(monkeypatch)
    stand_ins.seconds.update(tests=17, training=7)  # the pytest calls leave 2 s before the deadline
    args = ["--device", "cpu", "--fast", "fp32,plain", "--budget_s", "40"]
    report = gpu_report.run(bench.parse_args(["--report", str(tmp_path / "short"), *args]), torch.device("cpu"))
    assert stand_ins.ran == ["CUDA tests", "parity check"]
    (call,) = report["calls"]
    assert call["spent_s"] <= 40 and call["left_out"][0]["unit"].startswith("training: mspe, 32")

    stand_ins.ran.clear()
    stand_ins.seconds.update(tests=15)  # 6 s before the deadline: the first measurement runs, and ends in time
    report = gpu_report.run(bench.parse_args(["--report", str(tmp_path / "long"), *args]), torch.device("cpu"))
    assert stand_ins.ran[2] == ("training", 32, "mspe", "fp32, grouped modconv, custom ops")  # the original's
    assert report["calls"][0]["spent_s"] <= 40


def test_a_measurement_stops_timing_at_its_deadline_or_is_left_out(one_torch_thread):
    args = bench.parse_args(["--device", "cpu", "--warmup", "2", "--iters", "100000", "--gen_iters", "100000"])
    config, cpu = model_config({"size": 32, "position": "mspe", "channel_max": 16}), torch.device("cpu")
    settings = bench.fast_settings("fp32,plain")
    measure.count_flops(config, 2)  # counted once, before the clock starts
    figures = measure.measure_training(config, 2, settings, args, cpu, deadline=time.perf_counter() + 12)
    # whole R1 periods, at least one, and fewer than asked
    assert figures["iters"] % 16 == 0 and 16 <= figures["iters"] < figures["iters_asked"] == 100000
    assert figures["train_img_s"] > 0 and figures["setup_s"] < figures["seconds"]
    # one warm-up iteration gives no rate: the first iteration's time stands in for it, so that a period
    # that would pass the deadline is not started (here a period takes about 2.4 s)
    args.warmup = 1
    deadline = time.perf_counter() + 1.5
    with contextlib.suppress(measure.OutOfBudget):
        measure.measure_training(config, 2, settings, args, cpu, deadline=deadline)
    assert time.perf_counter() < deadline + 0.5
    generation = measure.measure_generation(config, 2, settings, args, cpu, deadline=time.perf_counter() + 2)
    assert 1 <= generation["gen_iters"] < generation["gen_iters_asked"]
    for measure_function in (measure.measure_training, measure.measure_generation):
        with pytest.raises(measure.OutOfBudget, match="warm-up passed the deadline"):
            measure_function(config, 2, settings, args, cpu, deadline=time.perf_counter())


def test_a_pytest_call_past_the_budget_is_stopped_and_recorded(tmp_path):
    (tmp_path / "test_slow.py").write_text(
        "import time\n\nimport pytest\n\n@pytest.mark.cuda\ndef test_sleeps():\n    time.sleep(60)\n"
    )
    tests = gpu_report.run_cuda_tests([str(tmp_path)], timeout=3)
    assert tests["cut_by_budget"] and tests["returncode"] is None
    assert tests["summary"].startswith("stopped by the budget after") and tests["seconds"] < 30


def test_budget_s_is_the_reports_time_limit():
    with pytest.raises(SystemExit):
        bench.parse_args(["--budget_s", "60"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--report", "out", "--budget_s", "0"])
    assert bench.parse_args(["--report", "out", "--budget_s", "60"]).budget_s == 60
