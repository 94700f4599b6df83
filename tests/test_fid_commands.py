"""rosinality's FID command lines (calc_inception.py LMDB, fid.py --inception STATS.pkl CKPT) and
`metrics.py inception` / `metrics.py fid` with a random-weight FID Inception: one pipeline for all
of them; statistics files of the original read without unpickling arbitrary objects, and the
Inception download failing clearly offline."""

import io
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

import calc_inception
import fid
import metrics
from evaluation import fid as fid_metric
from evaluation import inception


@pytest.fixture(scope="module")
def fid_inception_weights(tmp_path_factory):
    """A random-weight state dict of the FID Inception (the real file's format)."""
    path = tmp_path_factory.mktemp("inception") / "pt_inception_random.pth"
    torch.save(inception.fid_inception_v3().state_dict(), path)
    return str(path)


class WritesAFile:
    """Unpickling this runs open(PATH, 'w'): code a statistics file must never run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5])
def test_statistics_pickled_as_the_original_writes_them_are_read(tmp_path, protocol):
    mean, cov = np.arange(4.0), np.eye(4) * 2
    path = tmp_path / "inception_ffhq.pkl"
    with open(path, "wb") as file:
        pickle.dump(
            {"mean": mean, "cov": cov, "size": 256, "path": "ffhq", "count": np.int64(7)}, file, protocol=protocol
        )
    loaded_mean, loaded_cov, info = fid_metric.load_statistics(str(path))
    assert np.array_equal(loaded_mean, mean) and np.array_equal(loaded_cov, cov)
    assert info == {"size": 256, "path": "ffhq", "count": 7}


def test_a_statistics_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "inception_evil.pkl"
    with open(path, "wb") as file:
        pickle.dump({"mean": np.zeros(2), "cov": np.eye(2), "payload": WritesAFile(str(marker))}, file)
    with pytest.raises(ValueError, match=r"would call _?io\.open") as refused:  # _io.open from Python 3.12
        fid_metric.load_statistics(str(path))
    assert "calc_inception.py" in str(refused.value)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        fid_metric.StatisticsUnpickler(io.BytesIO(pickle.dumps(torch.nn.Identity()))).load()


def test_the_original_command_lines(
    synthetic_lmdb, tmp_path, monkeypatch, capsys, fid_inception_weights, make_tiny_checkpoint
):
    monkeypatch.chdir(tmp_path)
    # the Frechet distance itself (a 2048 x 2048 matrix square root, seconds) is tested in
    # test_metrics.py; here: what the command line feeds it
    compared = []
    monkeypatch.setattr(fid_metric, "frechet_distance", lambda *stats: compared.append(stats) or 1.5)
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", position="mspe")
    calc_inception.main(
        [
            *"--size 32 --batch 4 --n_sample 6 --flip --inception_weights".split(),
            fid_inception_weights,
            "--device",
            "cpu",
            synthetic_lmdb,
        ]
    )
    stats = tmp_path / "inception_lmdb.pkl"
    with open(stats, "rb") as file:
        written = pickle.load(file)  # readable by rosinality's fid.py, which unpickles it
    assert written["mean"].shape == (2048,) and written["cov"].shape == (2048, 2048)
    assert written["size"] == 32 and written["path"] == synthetic_lmdb
    fid.main(
        [
            "--inception",
            str(stats),
            *"--truncation 0.7 --truncation_mean 64 --batch 4 --n_sample 6 --size 32".split(),
            *"--inception_weights".split(),
            fid_inception_weights,
            "--device",
            "cpu",
            ckpt,
        ]
    )
    assert float(capsys.readouterr().out.split("fid:")[1].split()[0]) == 1.5
    sample_mean, sample_cov, real_mean, real_cov = compared[0]
    assert sample_mean.shape == (2048,) and sample_cov.shape == (2048, 2048)
    assert np.array_equal(real_mean, written["mean"]) and np.array_equal(real_cov, written["cov"])
    assert not np.allclose(sample_mean, real_mean)
    with pytest.raises(SystemExit, match="32 px"):
        fid.main(
            [
                "--inception",
                str(stats),
                "--size",
                "64",
                "--inception_weights",
                fid_inception_weights,
                make_tiny_checkpoint(tmp_path / "big.pt", position="mspe", size=64),
            ]
        )


def test_every_command_makes_and_uses_the_same_real_statistics(
    synthetic_lmdb, tmp_path, monkeypatch, capsys, fid_inception_weights, make_tiny_checkpoint
):
    """calc_inception.py (.pkl) and `metrics.py inception` (.npz) write the same statistics, and
    `metrics.py fid` against them equals `metrics.py fid --path`, which computes them afresh."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fid_metric, "frechet_distance", lambda mean, cov, real_mean, real_cov: float(real_mean.sum()))
    pkl, npz = str(tmp_path / "real.pkl"), str(tmp_path / "real.npz")
    common = ["--size", "32", "--batch", "3", "--n_sample", "3", "--device", "cpu"]
    calc_inception.main([*common, "--inception_weights", fid_inception_weights, "--out", pkl, synthetic_lmdb])
    metrics.main(
        [
            *"inception --size 32 --batch 3 --n 3 --device cpu --path".split(),
            synthetic_lmdb,
            "--inception",
            fid_inception_weights,
            "--real_stats",
            npz,
        ]
    )
    (pkl_mean, pkl_cov, pkl_info), (npz_mean, npz_cov, npz_info) = map(fid_metric.load_statistics, (pkl, npz))
    assert np.array_equal(pkl_mean, npz_mean) and np.array_equal(pkl_cov, npz_cov)
    assert pkl_info == npz_info and pkl_info["n_sample"] == 3 and pkl_info["inception"] == "pt_inception_random.pth"

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt", position="mspe")
    fid_flags = ["fid", "--ckpt", ckpt, *"--n 3 --batch 3 --device cpu --inception".split(), fid_inception_weights]
    metrics.main([*fid_flags, "--real_stats", npz, "--out", "cached"])
    metrics.main([*fid_flags, "--path", synthetic_lmdb, "--out", "fresh"])
    cached, fresh = (
        json.loads((tmp_path / out / "fid.json").read_text())["results"][0]["fid"] for out in ("cached", "fresh")
    )
    assert cached == fresh == pytest.approx(float(npz_mean.sum()))
    assert "compares two networks" not in capsys.readouterr().out

    # the same statistics against features of weights of another name: said, not silent
    other = tmp_path / "torchvision_inception.pth"
    shutil.copyfile(fid_inception_weights, other)
    metrics.main([*fid_flags[:-1], str(other), "--real_stats", npz, "--out", "other"])
    assert "from the Inception weights pt_inception_random.pth, the generated images' features from " in (
        capsys.readouterr().out
    )


def test_without_network_the_inception_download_says_how_to_proceed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    with pytest.raises(FileNotFoundError, match="--inception_weights") as error:
        inception.load_inception(None)
    assert "pt_inception-2015-12-05-6726825d.pth" in str(error.value)
    assert "metrics.py: --inception PATH" in str(error.value)  # its flag is named otherwise


def test_a_partial_inception_download_is_named_not_unpickled(tmp_path):
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, weights)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot be read as a state dict: it is truncated") as error:
        inception.load_inception(str(weights))
    assert "weights_only" not in str(error.value)  # torch's advice would run the file's code


def test_calc_inception_refuses_too_few_images_before_loading_anything():
    with pytest.raises(SystemExit, match="--n_sample must be at least 2 .* not 1 and 64"):
        calc_inception.main(["--n_sample", "1", "no_such_lmdb"])
