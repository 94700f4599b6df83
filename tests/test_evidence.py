"""evidence.py at a tiny budget: two models, two seeds trained two at a time, every figure, the
report, a second call that reuses what the first trained and measured, and a third that measures
generator-only checkpoints trained on another machine."""

import csv
import os

import pytest
import torch
from PIL import Image

import evidence
from checkpoint import load_checkpoint

TINY = [
    *"--models none,mspe --seeds 0,1 --iter 2 --batch 4 --size 16 --channel_max 16 --latent 16".split(),
    *"--n_mlp 1 --images 32 --n 8 --step 2 --device cpu --out report --parallel 2".split(),
]


def test_evidence_report_at_tiny_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    this_machine = evidence.machine
    monkeypatch.setattr(evidence, "machine", lambda device: "NVIDIA H100 80GB HBM3")
    evidence.main(TINY)
    report = tmp_path / "report"
    for name in [
        *"report.md runs.csv summary.csv eqt.png swd_vs_shift.png samples.png shift_none.gif shift_mspe.gif".split()
    ]:
        assert (report / name).is_file(), name

    # two runs trained side by side, each writing train.py's output to its own log
    for model in ["none", "mspe"]:
        for seed in [0, 1]:
            assert "--ckpt latest" in (report / "runs" / f"{model}-s{seed}.log").read_text()

    with open(report / "runs.csv") as file:
        runs = list(csv.DictReader(file))
    assert [(row["model"], row["seed"]) for row in runs] == [("none", "0"), ("none", "1"), ("mspe", "0"), ("mspe", "1")]
    for row in runs:
        assert float(row["swd_0"]) > 0 and float(row["inversion_psnr"]) > 0
    # the infinite plane exists only for a positional input
    assert [row["eqt_plane_int"] == "" for row in runs] == [True, True, False, False]
    # seeds differ, so the spread over them is not zero
    with open(report / "summary.csv") as file:
        summary = {row["model"]: row for row in csv.DictReader(file)}
    assert float(summary["mspe"]["eqt_int_sd"]) > 0

    text = (report / "report.md").read_text()
    assert "| mspe |" in text and " ± " in text
    with Image.open(report / "samples.png") as samples:
        assert samples.height >= 2 * 16 and samples.width > 8 * 16  # a labelled row of 8 samples per model

    # a second call trains nothing and measures nothing again
    checkpoints = sorted(tmp_path.glob("checkpoint/*/*.pt"))
    stamps = [os.path.getmtime(path) for path in checkpoints]
    caches = [os.path.getmtime(path) for path in sorted(report.glob("runs/*-s*.json"))]
    capsys.readouterr()
    evidence.main(TINY)
    assert [os.path.getmtime(path) for path in checkpoints] == stamps
    assert [os.path.getmtime(path) for path in sorted(report.glob("runs/*-s*.json"))] == caches
    assert "| mspe |" in capsys.readouterr().out

    # other runs (one seed) into the same folder would replace its report: refused, nothing written
    reported = (report / "runs.csv").read_text()
    with pytest.raises(SystemExit, match="report holds the report of other runs .* give it another --out"):
        evidence.main([*TINY, "--seeds", "0"])
    assert (report / "runs.csv").read_text() == reported

    # trained on a GPU, measured here from generator-only checkpoints (what a GPU lent for a short
    # while can bring back): the same figures, and the report says which machine did what
    for path in checkpoints:
        trained = load_checkpoint(path)
        torch.save({"g_ema": trained["g_ema"], "args": trained["args"]}, path)
    for cache in report.glob("runs/*-s*.json"):
        cache.unlink()
    runs_on_gpu = (report / "runs.csv").read_text()
    monkeypatch.setattr(evidence, "machine", this_machine)
    evidence.main(TINY)
    assert (report / "runs.csv").read_text() == runs_on_gpu
    text = (report / "report.md").read_text()
    assert "(train + measure + gif on NVIDIA H100 80GB HBM3: " in text
    assert f"; measure + gif on a {os.cpu_count()}-core CPU: " in text

    # a run trained again under its name (train.py changed, say) has other weights: its cached
    # figures are not the new run's, and it alone is measured again
    final = next(path for path in checkpoints if path.name == "000002.pt")  # --iter 2
    retrained = load_checkpoint(final)
    retrained["g_ema"] = {key: value + 1e-3 for key, value in retrained["g_ema"].items()}
    torch.save(retrained, final)
    caches = {path.name: os.path.getmtime(path) for path in report.glob("runs/*-s*.json")}
    evidence.main(TINY)
    measured_again = [
        path.name for path in report.glob("runs/*-s*.json") if os.path.getmtime(path) != caches[path.name]
    ]
    assert len(measured_again) == 1

    # a fresh clone beside the committed report has none of its checkpoints: every run trains
    # anew, and the report counts this call's time only, not the committed runs' too
    for path in checkpoints:
        path.unlink()
    evidence.main(TINY)
    assert "NVIDIA H100" not in (report / "report.md").read_text()
    assert f"wall time in all on a {os.cpu_count()}-core CPU" in (report / "report.md").read_text()


def test_a_run_that_train_py_refuses_stops_with_train_py_s_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failing = [*TINY, "--lr", "0"]
    with pytest.raises(SystemExit) as stopped:
        evidence.main(failing)
    assert "failed (exit 1); it ended with: --lr must be positive, not 0.0" in str(stopped.value)
    assert "(its output is in report/runs/" in str(stopped.value)


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--n 0", "argument --n: must be at least 1, not 0"),
        ("--iter -5", "argument --iter: must be at least 1, not -5"),
        ("--size 30", "--size: size must be a power of two"),
        ("--models none,none", "--models names none, none: each at most once"),
        ("--seeds 0,1,0", "--seeds names 0, 1, 0: each at most once"),
    ],
)
def test_settings_that_would_fail_after_training_are_refused_first(flags, message, capsys):
    with pytest.raises(SystemExit):
        evidence.parse_args(["--preset", "cpu", *flags.split()])
    assert message in capsys.readouterr().err


def test_a_report_folder_without_runs_is_written_into(tmp_path):
    # a runs.csv of no rows (emptied by hand, say) reports no runs to replace, and names none
    (tmp_path / "runs.csv").write_text("model,seed,checkpoint\n")
    args = evidence.parse_args(["--preset", "cpu", "--out", str(tmp_path)])
    evidence.refuse_other_report(args, [("none", 0)])


def test_a_smaller_iter_trains_runs_of_its_own_and_a_larger_one_continues(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = evidence.parse_args(["--preset", "cpu", "--iter", "6000"])
    folder = tmp_path / "checkpoint" / evidence.run_name(trained, "none", 0)
    folder.mkdir(parents=True)
    (folder / "004500.pt").touch()
    (folder / "006000.pt").touch()
    assert evidence.final_checkpoint(trained, "none", 0) == os.path.join("checkpoint", folder.name, "006000.pt")
    longer = evidence.parse_args(["--preset", "cpu", "--iter", "9000"])
    assert evidence.final_checkpoint(longer, "none", 0) == os.path.join("checkpoint", folder.name, "009000.pt")
    # the README's scaled-down command after the full preset: not the 6000-iteration run's folder,
    # where train.py would call training complete and 000500.pt would never appear
    shorter = evidence.parse_args(["--preset", "cpu", "--iter", "500"])
    expected = os.path.join("checkpoint", f"{folder.name}-to500", "000500.pt")
    assert evidence.final_checkpoint(shorter, "none", 0) == expected
    # its report, made before the run trained on, would be replaced by new runs' and says why
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "runs.csv").write_text(f"model,seed,checkpoint\nnone,0,checkpoint/{folder.name}/000500.pt\n")
    shorter.out = str(tmp_path / "small")
    with pytest.raises(SystemExit, match="trained on since without keeping those checkpoints"):
        evidence.refuse_other_report(shorter, [("none", 0)])
    # a checkpoint the longer run kept is the shorter run's (docs/stylegan3.md's --iter 3000 report)
    kept = evidence.parse_args(["--preset", "cpu", "--iter", "4500"])
    assert evidence.final_checkpoint(kept, "none", 0) == os.path.join("checkpoint", folder.name, "004500.pt")
