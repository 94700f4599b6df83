"""The GPU report of `benchmarks/bench.py --report OUT_DIR`: its six steps in order of value
within --budget_s (bench.py's docstring lists them), the pytest calls, the report file that a
later call continues, and report.md."""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import torch

import op
from benchmarks import ROOT
from benchmarks.measure import (
    ORIGINAL,
    REFERENCE_DEVICE,
    OutOfBudget,
    chosen_ops,
    cut_mark,
    describe,
    measure_generation,
    measure_training,
    reference_figures,
    reference_workloads,
    synchronize,
    table,
    timing_step,
    tiny_workloads,
    workload_label,
)
from utils.device import default_precision

# The CPU parity check, the report's step 2; step 1 runs the other CUDA tests.
PARITY_TESTS = "tests/test_cuda_parity.py"
# Seconds before --budget_s (a tenth of it at most) at which work stops: what saving the report
# and leaving the process (the CUDA context, compile workers) take.
FINISH_S = 10
# A guess at what a first compiled measurement takes beyond an eager one, before any was timed:
# inductor building the graphs of a 256 px generator and discriminator (three and two).
COMPILE_GUESS_S = 90
# the kinds of measurement: the report's list of records of each
MEASUREMENTS = {"training": "measurements", "generation": "generation"}


class Budget:
    """--budget_s: the report's time limit, counted from its start (None: no limit). Work stops
    at the `deadline`, FINISH_S (at most a tenth of the limit) before it, so that saving the
    report and leaving fit in; `left_out` lists what the budget left out in this call, as
    {"unit": what, "why": why}."""

    clock = staticmethod(time.perf_counter)  # the clock of the measurements' deadlines

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = self.clock()
        self.finish_s = 0.0 if seconds is None else min(FINISH_S, seconds / 10)
        self.deadline = None if seconds is None else self.start + seconds - self.finish_s
        self.left_out = []

    def spent(self):
        return self.clock() - self.start

    def left(self):
        """Seconds to the deadline: math.inf without a limit, 0 or less once it has passed."""
        return math.inf if self.deadline is None else self.deadline - self.clock()


def unit_label(kind, workload, settings):
    """'training: mspe, 256, batch 16, tf32, grouped modconv, custom ops': one measurement."""
    return f"{kind}: {workload_label(*workload)}, {describe(settings)}"


def scaled_shortest(records, workload, kind):
    """The shortest run of a `kind` measurement of `workload` that earlier records suggest: the
    latest one of the same workload, else the latest one scaled by the ratio of the original
    code's seconds per iteration (or per batch) between the two workloads (REFERENCE: the same
    across settings and GPUs, near enough; 1 where it did not measure one of them)."""
    same_workload = [r for r in records if (r["model"], r["batch"]) == tuple(workload)]
    if same_workload:
        return same_workload[-1]["shortest_s"]
    record = records[-1]
    figure = "train" if kind == "training" else "generate"
    ours, theirs = reference_figures(*workload), reference_figures(record["model"], record["batch"])
    if ours is None or theirs is None:
        return record["shortest_s"]
    return record["shortest_s"] * (workload[1] / ours[figure]) / (record["batch"] / theirs[figure])


def tests_not_run(summary):
    """run_cuda_tests' record of a pytest call that the budget did not let run to its end."""
    counts = {word: 0 for word in ("passed", "failed", "skipped", "error")}
    return {
        **counts,
        "returncode": None,
        "summary": summary,
        "failed_tests": {},
        "output": "",
        "seconds": 0.0,
        "cut_by_budget": True,
    }


def run_cuda_tests(paths=("tests",), ignore=(), timeout=None):
    """Run the CUDA tests of `paths` but the files of `ignore` (`python -m pytest -m cuda PATHS`
    from the repository root). Returns the counts ('passed', 'failed', 'skipped', 'error'),
    pytest's exit code ('returncode'), its summary line, {id: first line of the message} of the
    tests that failed or errored ('failed_tests': the parity test's message carries its figures),
    the end of its output and the seconds it took. A call not over after `timeout` seconds is
    stopped with every process it started (an op's build too, which would hold torch's build lock)
    and recorded as tests_not_run, with the output it gave."""
    # -vv: the short summary's messages whole, not cut at the terminal's width
    ignored = [f"--ignore={path}" for path in ignore]
    command = [sys.executable, "-m", "pytest", "-vv", "-rfEs", "-m", "cuda", *ignored, *paths]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as stop:  # the budget's timeout, or an interrupt: no orphaned build either way
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if not isinstance(stop, subprocess.TimeoutExpired):
            raise
        stdout, _ = process.communicate()
        seconds = time.perf_counter() - started
        return {
            **tests_not_run(f"stopped by the budget after {seconds:.0f} s"),
            "output": stdout[-4000:],
            "seconds": seconds,
        }
    output = stdout.strip()
    summary = output.splitlines()[-1].strip("= ") if output else stderr[-500:]
    counts = {word: 0 for word in ("passed", "failed", "skipped", "error")}
    for part in summary.replace(" in ", ", ").split(", "):
        number, _, word = part.strip().partition(" ")
        if number.isdigit() and word.rstrip("s") in counts:
            counts[word.rstrip("s")] = int(number)
    failed_tests = {}
    for line in output.splitlines():
        outcome, _, rest = line.partition(" ")
        if outcome in ("FAILED", "ERROR"):
            test_id, _, message = rest.partition(" - ")
            failed_tests[test_id] = message
    return {
        **counts,
        "returncode": process.returncode,
        "summary": summary,
        "failed_tests": failed_tests,
        "output": stdout[-4000:],
        "seconds": time.perf_counter() - started,
    }


def profile(config, batch, settings, device, path, iterations=6):
    """torch.profiler's table of the top operators over a few iterations, written to `path`."""
    with chosen_ops(settings):
        step, real = timing_step(config, batch, settings, device)
        for iteration in range(3):
            step(iteration, real)
        synchronize(device)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profiler:
            for iteration in range(iterations):
                step(iteration, real)
            synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    text = profiler.key_averages().table(sort_by=sort_by, row_limit=30)
    with open(path, "w") as file:
        file.write(f"{workload_label(config, batch)}, {describe(settings)}, {iterations} iterations\n{text}\n")


class GPUReportFile:
    """The GPU report's results, saved to OUT_DIR/report.json and report.md after every unit of
    work (a pytest call, a measurement, the profile). An unfinished report of the same device and
    torch version found there is continued: its steps and measurements are kept and only the
    missing ones run (failed measurements and pytest calls that the budget stopped run again).
    Each call adds to `calls` its budget, the seconds it spent and what the budget left out."""

    def __init__(self, out, device_name, budget):
        self.out = out
        self.path = os.path.join(out, "report.json")
        self.budget = budget
        self.results = {}
        if os.path.exists(self.path):
            with open(self.path) as file:
                saved = json.load(file)
            same_machine = (saved.get("device"), saved.get("torch")) == (device_name, torch.__version__)
            if not saved.get("finished") and same_machine:
                for key in MEASUREMENTS.values():
                    saved[key] = [figures for figures in saved.get(key, []) if "error" not in figures]
                for key in ("cuda_tests", "parity_test"):
                    if saved.get(key, {}).get("cut_by_budget"):
                        del saved[key]
                print(f"continuing the unfinished report in {out} ({len(saved['measurements'])} measurements kept)")
                self.results = saved
        self.results.update(device=device_name, torch=torch.__version__, finished=False)
        for key in (*MEASUREMENTS.values(), "calls"):
            self.results.setdefault(key, [])
        self.call = {"budget_s": budget.seconds, "spent_s": 0.0, "left_out": budget.left_out}
        self.results["calls"].append(self.call)
        # the tables' rows once step 3 has chosen the settings: {table: [(workload, settings)]}
        self.plans = {}

    def save(self):
        """report.json and report.md as they stand, with the tables' rows and this call's time."""
        self.call["spent_s"] = self.budget.spent()
        for name, plan in self.plans.items():
            self.results[name] = [self.row(workload, settings) for workload, settings in plan]
        with open(self.path, "w") as file:
            json.dump(self.results, file, indent=2, default=str)
        with open(os.path.join(self.out, "report.md"), "w") as file:
            file.write(gpu_report_markdown(self.results))

    def record(self, kind, workload, settings):
        """The record of the `kind` measurement of `workload` under `settings`, or None."""
        key = (*workload, describe(settings))
        records = self.results[MEASUREMENTS[kind]]
        return next((r for r in records if (r["model"], r["batch"], r["settings"]) == key), None)

    def not_measured(self, unit):
        """What a table says of a unit without a record: the budget left it out, or not yet."""
        left_out = any(entry["unit"] == unit for entry in self.budget.left_out)
        return "not measured (budget)" if left_out else "not measured yet"

    def row(self, workload, settings):
        """A table's row: the training record of `workload` under `settings`, or why there is
        none, with its generation figure where step 5 measures one (the "workloads" table)."""
        config, batch = workload
        record = self.record("training", workload, settings)
        unit = unit_label("training", workload, settings)
        row = dict(record or {"model": config, "batch": batch, "settings": describe(settings)})
        if record is None:
            row["not_measured"] = self.not_measured(unit)
        if (workload, describe(settings)) in [(w, describe(s)) for w, s in self.plans.get("workloads", [])]:
            generation = self.record("generation", workload, settings)
            if generation is None:
                row["generation"] = self.not_measured(unit_label("generation", workload, settings))
            elif "error" in generation:
                row["generation"] = f"failed: {generation['error']}"
            else:
                figures = ("generate_img_s", "gen_iters", "gen_iters_asked")
                row.update({key: generation[key] for key in figures if key in generation})
        return row

    def leave_out(self, unit, why):
        """Record that the budget left `unit` out of this call, and say so."""
        self.budget.left_out.append({"unit": unit, "why": why})
        print(f"  {unit}: not measured (budget: {why})")
        self.save()

    def tests(self, key, unit, paths, ignore=()):
        """results[key]: run_cuda_tests' record of `paths` but `ignore`, run unless an earlier call
        did, and stopped at the budget's deadline (a continued report runs it again)."""
        if key not in self.results:
            left = self.budget.left()
            if left <= 0:
                record = tests_not_run("not run (budget)")
            else:
                record = run_cuda_tests(paths, ignore, timeout=None if left == math.inf else left)
            self.results[key] = record
            if record.get("cut_by_budget"):
                self.leave_out(unit, record["summary"])
            self.save()
        return self.results[key]

    def estimated_seconds(self, kind, workload, settings):
        """Seconds the shortest `kind` measurement of `workload` under `settings` takes (set-up and
        one R1 period, or one generation batch): scaled_shortest of the records of the same
        settings; for a generation without any, the training record of the same workload and
        settings (which builds and compiles more); else of the records of any settings, plus
        COMPILE_GUESS_S for a first compiled one. With nothing of this kind timed, 0 (its own
        deadline bounds it), but for the report's first measurement: the finishing allowance
        (Budget.finish_s). Its start, building the first model and running its first iteration,
        cannot stop at the deadline; with the allowance left before the deadline as well as after
        it, that start may take twice the allowance and still end within the budget."""
        timed = [r for r in self.results[MEASUREMENTS[kind]] if "shortest_s" in r]
        same_settings = [r for r in timed if r["settings"] == describe(settings)]
        if same_settings:
            return scaled_shortest(same_settings, workload, kind)
        training = self.record("training", workload, settings)
        if kind == "generation" and training is not None and "shortest_s" in training:
            return training["shortest_s"]
        if timed:
            first_compiled = settings["compile"] and not any("compiled" in r["settings"] for r in timed)
            return scaled_shortest(timed, workload, kind) + COMPILE_GUESS_S * first_compiled
        first_measurement = not any("shortest_s" in r for key in MEASUREMENTS.values() for r in self.results[key])
        return self.budget.finish_s if first_measurement else 0.0

    def measured(self, workload, settings, args, device, kind="training"):
        """measure_training's figures (kind 'generation': measure_generation's) of one workload,
        (model configuration, batch), under one settings dict, measured once. It starts only if
        the time left holds its estimate (estimated_seconds) and stops at the budget's deadline;
        one the budget leaves out comes back as a row saying so and is not kept, so a continued
        report measures it. A setting that fails (out of memory, a kernel or compiler error) is
        recorded with its error and the report goes on: one bad candidate must not cost the others."""
        found = self.record(kind, workload, settings)
        if found is not None:
            return found
        config, batch = workload
        unit = unit_label(kind, workload, settings)
        left_out = {
            "model": config,
            "batch": batch,
            "settings": describe(settings),
            "not_measured": "not measured (budget)",
        }
        estimate, left = self.estimated_seconds(kind, workload, settings), self.budget.left()
        if left <= estimate:
            self.leave_out(unit, f"about {estimate:.0f} s needed, {max(0.0, left):.0f} s left")
            return left_out
        measure_function = measure_training if kind == "training" else measure_generation
        try:
            figures = measure_function(config, batch, settings, args, device, deadline=self.budget.deadline)
        except OutOfBudget as error:
            figures = None
            self.leave_out(unit, str(error))
        except Exception as error:
            message = (str(error).strip().splitlines() or [""])[0][:200].replace("|", "/")
            figures = {
                "model": config,
                "batch": batch,
                "settings": describe(settings),
                "error": f"{type(error).__name__}: {message}",
            }
            print(f"  {unit}: failed, {figures['error']}")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if figures is None:
            return left_out
        self.results[MEASUREMENTS[kind]].append(figures)
        self.save()
        return figures


def failure_note(results):
    """report.md's note when the CUDA tests or the parity check did not pass (None when both did):
    the measurements then run the PyTorch references."""
    failing = [
        f"({'stopped by the budget' if record['returncode'] is None else 'pytest exit ' + str(record['returncode'])})"
        f" in {where}"
        for where, key in (("the ops' and StyleGAN3's tests", "cuda_tests"), ("the CPU parity check", "parity_test"))
        for record in [results[key]]
        if record["returncode"] != 0
    ]
    if not failing:
        return None
    return (
        f"The CUDA tests did not pass {' and '.join(failing)}: every measurement below runs the PyTorch references "
        "(reference ops)."
    )


def run(args, device):
    """bench.py --report: the six steps of bench.py's docstring, within --budget_s; returns the
    GPU report's dict."""
    os.makedirs(args.report, exist_ok=True)
    cuda = device.type == "cuda"
    budget = Budget(args.budget_s)
    report_file = GPUReportFile(args.report, torch.cuda.get_device_name(device) if cuda else "CPU", budget)
    results = report_file.results
    if not cuda:
        print(
            "no CUDA on this machine: the ops run their references, the CUDA tests skip, and the workloads "
            "shrink to tiny CPU ones (32 px, 32 channels)"
        )
    loads = reference_workloads(args) if cuda else tiny_workloads(args)
    # where candidates are tried and profiled: the first MS-PE workload, mspe 256 (tiny: mspe 32)
    trial_load = next((config, batch) for config, batch in loads if config["position"] == "mspe")
    # in order of value: the trial's size (step 3), then the larger ones (step 4), MS-PE first
    by_value = sorted(loads, key=lambda workload: (workload[0]["size"], workload[0]["position"] != "mspe"))
    trial_size = [workload for workload in by_value if workload[0]["size"] == trial_load[0]["size"]]
    larger = [workload for workload in by_value if workload not in trial_size]
    original = {**ORIGINAL, "precision": default_precision(device)}

    def heading(text):
        left = "" if budget.deadline is None else f", {max(0.0, budget.left()):.0f} s of the budget left"
        print(f"{text} ({budget.spent():.0f} s into the report{left})")

    def print_tests(record):
        print(f"  {record['summary']}")
        for test_id, message in record["failed_tests"].items():
            print(f"  failed: {test_id}: {message}")

    heading("1/6 custom ops and the CUDA tests (python -m pytest -m cuda tests, but the parity check)")
    results["ops"] = op.implementations(torch.zeros(1, device=device))
    for op_name, implementation in results["ops"].items():
        print(f"  {op_name}: {implementation}")
    print_tests(report_file.tests("cuda_tests", "the CUDA tests", ["tests"], ignore=[PARITY_TESTS]))
    heading(f"2/6 the CPU parity check (python -m pytest -m cuda {PARITY_TESTS})")
    print_tests(report_file.tests("parity_test", "the CPU parity check", [PARITY_TESTS]))
    results.pop("ops_note", None)
    note = failure_note(results)
    if note:  # never time kernels that compute something else
        original = {**original, "impl": "ref"}
        args.fast = [{**settings, "impl": "ref"} for settings in args.fast]
        results["ops_note"] = note
        print(f"  {note}")

    heading(
        f"3/6 the original settings and {len(args.fast)} candidates on {workload_label(*trial_load)}, then the "
        "workloads of its size with the original settings and the fastest"
    )
    # the original settings first: the one row that compares with the original code's figures,
    # which a budget spent on candidates (a compiled one's compilation) must not leave out
    report_file.measured(trial_load, original, args, device)
    trials = [report_file.measured(trial_load, settings, args, device) for settings in args.fast]
    working = [(trial["train_img_s"], index) for index, trial in enumerate(trials) if "train_img_s" in trial]
    fastest = args.fast[max(working)[1]] if working else None
    results["trial_workload"] = {"model": trial_load[0], "batch": trial_load[1]}
    if fastest:
        results["fastest"] = describe(fastest)
    elif all("error" in trial for trial in trials):
        results["fastest"] = "none, every candidate failed"
    else:
        results["fastest"] = "none: the budget left the candidates out"
    compared = (original, fastest) if fastest else (original,)
    tried = {describe(settings): settings for settings in [*args.fast, original]}
    report_file.plans = {
        "workloads": [(workload, settings) for workload in loads for settings in compared],
        "trials": [(trial_load, settings) for settings in tried.values()],
    }
    report_file.save()
    print(table(results["trials"]))
    print(f"  fastest: {results['fastest']}")
    for workload in trial_size:
        for settings in compared:
            report_file.measured(workload, settings, args, device)

    heading(f"4/6 the larger workloads ({', '.join(workload_label(*workload) for workload in larger) or 'none'})")
    for workload in larger:
        for settings in compared:
            report_file.measured(workload, settings, args, device)

    heading("5/6 generation, every workload with the original settings and the fastest")
    for workload in by_value:
        for settings in compared:
            report_file.measured(workload, settings, args, device, kind="generation")

    profiled = fastest or original
    heading(f"6/6 profile of {workload_label(*trial_load)}, {describe(profiled)}")
    if "profile" not in results:
        estimate, left = report_file.estimated_seconds("training", trial_load, profiled), budget.left()
        if left <= estimate:
            report_file.leave_out("profile", f"about {estimate:.0f} s needed, {max(0.0, left):.0f} s left")
        else:
            started = time.perf_counter()
            profile(*trial_load, profiled, device, os.path.join(args.report, "profile.txt"))
            results["profile"] = {
                "workload": workload_label(*trial_load),
                "settings": describe(profiled),
                "seconds": time.perf_counter() - started,
            }

    results["finished"] = not budget.left_out
    report_file.save()
    print(table(results["workloads"]))
    left_out = len(budget.left_out)
    outcome = f"the budget left out {left_out} units: the same command continues" if left_out else "finished"
    heading(f"wrote {args.report}/report.md, report.json, profile.txt; {outcome}")
    return results


def reference_note(device):
    """report.md's word on the original code's figures: they come from another GPU."""
    if REFERENCE_DEVICE.split()[0] in device:
        return (
            f"The original code's figures beside them, the ratios' reference, were measured on an {REFERENCE_DEVICE} "
            f"of another machine, not on this report's {device}."
        )
    kind = "device" if device == "CPU" else "GPU"
    return (
        f"The original code's figures beside them, the ratios' reference, were measured on an {REFERENCE_DEVICE}, "
        f"another {kind} than this report's {device}: the ratios compare two {kind}s as well as two codes."
    )


def budget_markdown(results):
    """report.md's Budget section: this call's limit and time, what it left out, what it timed short."""
    *earlier, this = results["calls"]
    limit = f"a budget of {this['budget_s']:.0f} s" if this["budget_s"] else "no budget (--budget_s)"
    lines = [f"This call: {limit}, {this['spent_s']:.0f} s spent."]
    if earlier:
        lines[0] += (
            f" It continued a report of {len(earlier)} earlier calls, {sum(c['spent_s'] for c in earlier):.0f} s."
        )
    if this["left_out"]:
        lines += ["", "Not measured (budget); the same command continues with them:", ""]
        lines += [f"- {entry['unit']} ({entry['why']})" for entry in this["left_out"]]
    short = [
        f"- {kind}: {workload_label(r['model'], r['batch'])}, {r['settings']}: {r[iterations]} of "
        f"{r[iterations + '_asked']} {'iterations' if kind == 'training' else 'batches'}"
        for kind, iterations in (("training", "iters"), ("generation", "gen_iters"))
        for r in results[MEASUREMENTS[kind]]
        if cut_mark(r, iterations)
    ]
    if short:
        lines += ["", "Timed over fewer iterations than asked (the budget's deadline; † in the tables):", "", *short]
    return lines


def tests_markdown(results, key, title, text):
    """report.md's section of one pytest call of the report."""
    lines = [f"## {title}", "", text, ""]
    if key not in results:
        return [*lines, "Not run yet.", ""]
    record = results[key]
    lines += [f"Result: {record['summary']}", ""]
    failed = [f"- failed: `{test_id}`: {message}" for test_id, message in record["failed_tests"].items()]
    return [*lines, *failed, *([""] if failed else [])]


def gpu_report_markdown(results):
    """report.md: the device, the budget, the ops, what the CUDA tests gave and the tables,
    README-ready; what is not measured (yet, or for the budget) says so."""
    lines = [
        f"# benchmarks/bench.py --report on {results['device']} (torch {results['torch']})",
        "",
        f"Measured on {results['device']}. {reference_note(results['device'])}",
        "",
        "## Budget",
        "",
        *budget_markdown(results),
        "",
        "## Custom ops",
        "",
        *[f"- `{name}`: {implementation}" for name, implementation in results.get("ops", {}).items()],
        "",
        *tests_markdown(
            results,
            "cuda_tests",
            "CUDA tests",
            f"`python -m pytest -m cuda --ignore={PARITY_TESTS} tests`: the custom ops' CUDA kernels against their "
            "PyTorch references (forward, first and second derivatives) and StyleGAN3's filtered_lrelu against its "
            "reference.",
        ),
        *tests_markdown(
            results,
            "parity_test",
            "The CPU parity check",
            f"`python -m pytest -m cuda {PARITY_TESTS}`: fp32 training on the GPU against the CPU in each layout "
            "(losses within 1e-3 relative, weights within Adam's bound of 2 lr per iteration; a failure's message "
            "gives the figures).",
        ),
        *([results["ops_note"], ""] if "ops_note" in results else []),
    ]
    if "workloads" in results:
        lines += ["## Throughput: the original settings and the fastest candidate", "", table(results["workloads"]), ""]
        if any(cut_mark(r, "iters") or cut_mark(r, "gen_iters") for r in results["workloads"]):
            lines += ["† timed over fewer iterations than asked: the budget's deadline stopped it.", ""]
    succeeded = [r for r in results.get("workloads", []) if "train_img_s" in r]
    overheads = [
        f"- {r['model']['size']} px, {r['settings']}: MS-PE trains at "
        f"{100 * r['train_img_s'] / none['train_img_s']:.0f}% of none's speed"
        for r in succeeded
        if r["model"]["position"] == "mspe"
        for none in succeeded
        if (none["model"], none["batch"], none["settings"])
        == ({**r["model"], "position": "none"}, r["batch"], r["settings"])
    ]
    if overheads:
        lines += ["MS-PE against none:", "", *overheads, ""]
    if "trials" in results:
        lines += [f"## Every setting tried (fastest: {results['fastest']})", "", table(results["trials"]), ""]
    lines += ["## Profile", ""]
    if "profile" in results:
        profiled = results["profile"]
        lines.append(f"profile.txt: torch.profiler's top operators, {profiled['workload']}, {profiled['settings']}.")
    else:
        left_out = any(entry["unit"] == "profile" for entry in results["calls"][-1]["left_out"])
        lines.append("Not measured (budget)." if left_out else "Not measured yet.")
    return "\n".join([*lines, ""])
