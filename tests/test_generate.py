"""generate.py end to end: every mode on a tiny checkpoint, and clear errors for bad inputs."""

import os
import pickle
import subprocess
import sys

import pytest
import torch
from PIL import Image

import generate
from checkpoint import load_checkpoint, load_generator, resolve_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "generate.py")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, make_tiny_checkpoint):
    """A folder holding checkpoint/tiny/000100.pt: a tiny untrained MS-PE generator."""
    folder = tmp_path_factory.mktemp("generate")
    make_tiny_checkpoint(folder / "checkpoint" / "tiny" / "000100.pt")
    return folder


def run(workdir, *args):
    """Run generate.py in `workdir`; the repository root goes on PYTHONPATH for its imports."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
    )


def check_ok(result):
    assert result.returncode == 0, result.stderr


def image_size(path):
    with Image.open(path) as image:
        return image.size


def gif_frames(path):
    with Image.open(path) as image:
        return image.n_frames


@pytest.fixture(scope="module")
def grid(workdir):
    """generate/tiny/grid/ after the original README's command (model flags agreeing with the checkpoint)."""
    check_ok(
        run(workdir, *"--name tiny --ckpt 000100.pt --truncation 1.0 --position mspe --n_sample 4 --batch 3".split())
    )
    return workdir / "generate" / "tiny" / "grid"


def test_grid_as_in_the_readme(grid):
    assert image_size(grid / "grid.png") == (2 + 2 * 34, 2 + 2 * 34)  # 2x2 grid, padding 2
    for seed in range(4):
        assert image_size(grid / f"seed{seed:04d}.png") == (32, 32)


def test_scale_doubles_and_halves_the_size_and_a_seed_is_the_same_image(workdir, grid):
    check_ok(run(workdir, *"--name tiny --ckpt 000100.pt --mode scale --scales 0.5,1,2 --n_sample 3 --batch 2".split()))
    folder = workdir / "generate" / "tiny" / "scale"
    for seed in range(3):
        assert image_size(folder / f"seed{seed:04d}_x2.png") == (64, 64)
        assert image_size(folder / f"seed{seed:04d}_x0.5.png") == (16, 16)
    assert image_size(folder / "grid_x2.png")[0] > image_size(folder / "grid_x1.png")[0]

    # deterministic per seed, whatever the batch size and mode (grid above used --batch 3)
    assert (folder / "seed0002_x1.png").read_bytes() == (grid / "seed0002.png").read_bytes()


def test_canvas_has_the_requested_aspect_ratio(workdir):
    check_ok(
        run(
            workdir,
            *"--name tiny --ckpt 000100.pt --mode canvas --height 32 --width 96 --n_sample 2".split(),
            *"--truncation 0.7 --truncation_mean 64".split(),
        )
    )
    folder = workdir / "generate" / "tiny" / "canvas"
    assert image_size(folder / "seed0000_32x96.png") == (96, 32)
    assert image_size(folder / "seed0001_32x96.png") == (96, 32)
    assert (folder / "grid_32x96.png").exists()


def test_shift_writes_frames_and_gifs_of_pics_frames(workdir):
    result = run(workdir, *"--name tiny --ckpt 000100.pt --mode shift --pics 6 --radius 8 --sample 2".split())
    check_ok(result)
    assert "warning" not in result.stderr  # shift reads --pics and --radius
    folder = workdir / "generate" / "tiny" / "shift"
    for seed in range(2):
        assert gif_frames(folder / f"seed{seed:04d}.gif") == 6
        for frame in range(6):
            assert image_size(folder / f"seed{seed:04d}_{frame:04d}.png") == (32, 32)
    assert gif_frames(folder / "grid.gif") == 6


def test_mix_grid_has_a_header_row_and_column_and_names_the_flags_it_ignores(workdir):
    mix = "--name tiny --ckpt 000100.pt --mode mix --row_seeds 0-2 --col_seeds 3,4 --col_styles 0-3"
    result = run(workdir, *mix.split(), "--save", "single", "--pics", "3")
    check_ok(result)
    assert "warning: --mode mix ignores --save (read by --mode grid, shift, rotate, scale, canvas)" in result.stderr
    assert "warning: --mode mix ignores --pics (read by --mode shift, rotate, sticking)" in result.stderr
    # (1 + 2 columns) x (1 + 3 rows) cells of 32 pixels, padding 2
    assert image_size(workdir / "generate" / "tiny" / "mix" / "grid.png") == (2 + 3 * 34, 2 + 4 * 34)


def test_explicit_flag_contradicting_the_checkpoint_is_an_error(workdir):
    result = run(workdir, "--name", "tiny", "--ckpt", "000100.pt", "--position", "none")
    assert result.returncode != 0
    assert "position" in result.stderr and "mspe" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_gan_checkpoint_refuses_the_diffusion_models_flags(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit, match="holds a stylegan2 generator, which does not read --eta, --steps"):
        generate.main(["--name", "tiny", "--ckpt", "000100.pt", "--steps", "10", "--eta", "1"])
    with pytest.raises(SystemExit, match="holds a stylegan2 generator, which does not read --channels, --schedule"):
        generate.main(["--name", "tiny", "--ckpt", "000100.pt", "--channels", "16", "--schedule", "cosine"])


def test_latest_is_the_experiments_newest_complete_checkpoint(workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.makedirs("checkpoint/run")
    for name in ("000900.pt", "001000.pt", "000950.pt", "notes.pt"):
        torch.save({}, os.path.join("checkpoint", "run", name))
    assert resolve_checkpoint("latest", "run") == os.path.join("checkpoint", "run", "001000.pt")
    whole = open(os.path.join("checkpoint", "run", "001000.pt"), "rb").read()
    with open(os.path.join("checkpoint", "run", "001100.pt"), "wb") as file:
        file.write(whole[: len(whole) // 2])  # a copy still under way
    assert resolve_checkpoint("latest", "run") == os.path.join("checkpoint", "run", "001000.pt")
    assert "skipping checkpoint/run/001100.pt: it is truncated" in capsys.readouterr().err
    os.makedirs("checkpoint/empty")
    with pytest.raises(SystemExit, match="checkpoint/empty holds no numbered checkpoint"):
        generate.main(["--name", "empty", "--ckpt", "latest"])
    open(os.path.join("checkpoint", "empty", "000100.pt"), "w").close()
    with pytest.raises(SystemExit, match="checkpoint/empty holds no complete numbered checkpoint"):
        generate.main(["--name", "empty", "--ckpt", "latest"])
    with pytest.raises(SystemExit, match="give its --name too"):
        resolve_checkpoint("latest", None)  # metrics.py has no default --name
    monkeypatch.chdir(workdir)
    generate.main(["--name", "tiny", "--ckpt", "latest", "--mode", "grid", "--n_sample", "2"])
    assert os.path.exists(workdir / "generate" / "tiny" / "grid" / "grid.png")


def test_missing_checkpoint_is_an_error(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit, match="not found"):
        generate.main(["--name", "tiny", "--ckpt", "999999.pt"])


def test_a_file_that_is_not_a_checkpoint_is_an_error(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    (workdir / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match="cannot be read as a checkpoint"):
        generate.main(["--ckpt", "notes.pt"])
    with pytest.raises(SystemExit, match="'gone.pt' not found: no such file"):  # not 'truncated'
        load_checkpoint("gone.pt")
    # an NVIDIA network pickle is a plain pickle, which convert_weight.py reads
    (workdir / "network.pkl").write_bytes(pickle.dumps({"G_ema": {"weights": [1.0]}}, protocol=4))
    with pytest.raises(SystemExit, match="a plain pickle; an NVIDIA network .pkl is converted first"):
        load_checkpoint(str(workdir / "network.pkl"))


def test_canvas_that_does_not_fit_the_input_grid_is_an_error(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit, match="multiple of 8"):
        generate.main(["--name", "tiny", "--ckpt", "000100.pt", "--mode", "canvas", "--width", "36"])


def test_sample_is_an_alias_of_n_sample():
    assert generate.build_parser().parse_args(["--sample", "3"]).n_sample == 3


def test_seed_lists_read_ranges_and_refuse_one_counting_down():
    assert generate.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(SystemExit, match="'3-1' in '0,3-1' counts down and lists nothing: write 1-3"):
        generate.parse_seeds("0,3-1")


def test_projections_of_one_file_name_are_refused_where_they_name_the_outputs():
    # their single images, shift GIFs and sticking pictures would overwrite each other's
    files = ["inverse/p/00006.pt", "inverse/pw/00006.pt"]
    with pytest.raises(SystemExit, match="inverse/p/00006.pt and inverse/pw/00006.pt are both '00006'"):
        generate.main(["--ckpt", "unread.pt", "--mode", "shift", "--projection", *files])
    # a walk names no output after them, and may come back to where it started
    with pytest.raises(SystemExit, match="'unread.pt' not found"):
        generate.main(["--ckpt", "unread.pt", "--mode", "interpolate", "--projection", *files, files[0]])


@pytest.mark.parametrize("value", ["-1", "1.5"])
def test_a_sticking_spread_outside_zero_to_one_is_refused(value, capsys):
    # the share of the way from the centre to independent latents
    with pytest.raises(SystemExit):
        generate.build_parser().parse_args(["--mode", "sticking", "--spread", value])
    assert f"--spread: must be from 0 to 1, not {float(value)}" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_truncation_mean_of_no_latents_is_refused(value, capsys):
    # 0 averaged nothing (a NaN centre: black images), fewer crashed
    with pytest.raises(SystemExit):
        generate.build_parser().parse_args(["--truncation", "0.7", "--truncation_mean", value])
    assert f"--truncation_mean: must be at least 1, not {value}" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["stylegan2", "stylegan3-t"])
def test_truncation_above_one_moves_away_from_the_centre(arch, tmp_path, make_tiny_checkpoint):
    """As NVIDIA's psi: 1.5 lies as far beyond w as 0.5 lies short of it, towards the centre."""
    position = "none" if arch == "stylegan3-t" else "mspe"
    generator, _ = load_generator(make_tiny_checkpoint(tmp_path / "g.pt", position=position, arch=arch))
    z, _ = generate.seed_inputs(generator, range(2))

    def latents(truncation, centre):
        with torch.no_grad():
            return generator([z], truncation=truncation, truncation_latent=centre, return_latents=True)[1]

    w = latents(1, None)
    # None: the forward's own centre (the mean of mapped latents; StyleGAN3's tracked mean of w)
    for centre in [generator.truncation_latent(1.5, 64), None]:
        beyond, short = latents(1.5, centre), latents(0.5, centre)
        assert not torch.allclose(beyond, w)
        assert torch.allclose(beyond + short, 2 * w, atol=1e-5)
