"""projector.py end to end on a tiny checkpoint, without the network, and step for step against
the original code's projector.py.

LPIPS runs on a randomly initialised VGG16 trunk given as --lpips_weights (the package's own
linear layers load from its install folder), or the loss is plain MSE.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

import projector
from checkpoint import load_generator
from evaluation.perceptual import build_lpips
from formulas import formula_stylegan2_state
from model import Generator
from replay import ScriptedDraws
from utils.images import to_pil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "projector.py")
FACE = os.path.join(ROOT, "ref_face", "00006.png")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, make_tiny_checkpoint):
    """A folder holding checkpoint/tiny/000100.pt (tiny untrained MS-PE) and vgg16_random.pt."""
    folder = tmp_path_factory.mktemp("projector")
    make_tiny_checkpoint(folder / "checkpoint" / "tiny" / "000100.pt")
    # a torchvision vgg16 `features` state dict, randomly initialised: the shape of the real file
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    state = {f"features.{key}": value for key, value in features.state_dict().items()}
    torch.save(state, folder / "vgg16_random.pt")
    return folder


def run(workdir, *args, env=None):
    """Run projector.py in `workdir`; the repository root goes on PYTHONPATH for its imports."""
    env = dict(env or os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=180
    )


def test_shifted_w_plus_projection_with_lpips(workdir):
    result = run(
        workdir,
        *"--name tiny --w_plus --ckpt 000100.pt --position mspe --lpips_weights vgg16_random.pt".split(),
        *"--step 6 --shift_h 4 --shift_w -8".split(),
        FACE,
    )
    assert result.returncode == 0, result.stderr
    assert "PSNR" in result.stdout and "LPIPS" in result.stdout
    folder = workdir / "inverse" / "tiny"

    # the target is rolled along both axes (the original rolled it along x only)
    with Image.open(FACE) as face:
        unshifted = np.asarray(to_pil(projector.to_target(face.convert("RGB"), 32)))
    with Image.open(folder / "00006-target.png") as target:
        assert np.array_equal(np.asarray(target), np.roll(unshifted, (4, -8), axis=(0, 1)))
    with Image.open(folder / "00006-project.png") as reconstruction:
        assert reconstruction.size == (32, 32)

    saved = torch.load(folder / "00006.pt", weights_only=True)
    assert saved["latent"].shape == (1, 8, 32)  # W+: one latent per layer of a 32 px generator
    assert len(saved["noise"]) == 7 and (saved["shift_h"], saved["shift_w"]) == (4, -8)

    metrics = json.loads((folder / "00006.json").read_text())
    run_metrics = metrics["results"][0]
    assert run_metrics["loss_end"] < run_metrics["loss_start"]
    assert metrics["psnr"] > 0 and metrics["lpips"] is not None
    assert metrics["checkpoint"] == os.path.join("checkpoint", "tiny", "000100.pt")  # the file, not what --ckpt said

    # LPIPS is what the projection optimises, not only what scores it: from the same seed (so the
    # same first render) the start loss is the LPIPS distance plus --mse times the pixel MSE, and
    # the latents LPIPS and MSE steer towards differ
    generator, _ = load_generator(str(workdir / "checkpoint" / "tiny" / "000100.pt"))
    percept = build_lpips(str(workdir / "vgg16_random.pt"), "cpu")
    with Image.open(FACE) as face:
        targets = projector.to_target(face.convert("RGB"), 32)[None]

    def projection(**settings):
        settings = projector.ProjectionSettings(step=2, n_mean_latent=16, w_plus=True, **settings)
        return next(projector.project_shifted(generator, targets, [(4, -8)], settings, percept))

    lpips, mse, both = projection(loss="lpips"), projection(loss="mse"), projection(loss="lpips", mse=0.5)
    assert not torch.allclose(lpips["loss_start"], mse["loss_start"])
    torch.testing.assert_close(both["loss_start"], lpips["loss_start"] + 0.5 * mse["loss_start"])
    assert not torch.allclose(lpips["latent"], mse["latent"])


def test_an_alias_free_generator_inverts_a_target_moved_on_the_plane(workdir, monkeypatch, make_tiny_checkpoint):
    """Its shifts move an infinite plane: the target moves with zero fill (nothing wraps in, which
    it could not render) and only the part holding the image is compared."""
    monkeypatch.chdir(workdir)
    checkpoint = make_tiny_checkpoint(workdir / "sg3.pt", position="none", arch="stylegan3-t")
    projector.main(["--name", "sg3", "--ckpt", checkpoint, "--loss", "mse", "--step", "2", "--shift_w", "5", FACE])
    # a shift of the whole image leaves nothing of the target: refused, where it wrote NaN figures
    with pytest.raises(SystemExit, match="stylegan3-t shifts move an infinite plane: a shift of 32 px or more"):
        projector.main(["--name", "sg3", "--ckpt", checkpoint, "--loss", "mse", "--shift_w", "32", FACE])
    with Image.open(FACE) as face:
        face_target = projector.to_target(face.convert("RGB"), 32)
    unshifted = np.asarray(to_pil(face_target))
    with Image.open(workdir / "inverse" / "sg3" / "00006-target.png") as target:
        moved = np.asarray(target)
    assert np.array_equal(moved[:, 5:], unshifted[:, :-5])
    assert np.all(np.abs(moved[:, :5].astype(int) - 128) <= 1)  # zero fill: mid-grey, not the wrapped right edge

    # what the generator renders where the moved target is empty leaves the loss as it is
    target, mask = projector.integer_translate(face_target[None], 0, 5, circular=False)
    generated = torch.rand(1, 3, 32, 32) * 2 - 1
    elsewhere = generated + 3 * (1 - mask)  # changed only in the 5 columns the shift emptied
    settings = projector.ProjectionSettings(loss="mse")
    loss = projector.reconstruction_loss(generated, target, None, settings, mask)
    assert torch.equal(projector.reconstruction_loss(elsewhere, target, None, settings, mask), loss)
    unmasked = projector.reconstruction_loss(generated, target, None, settings)
    assert projector.reconstruction_loss(elsewhere, target, None, settings) > unmasked  # the change counts unmasked


def test_projection_around_a_circle_with_mse_writes_gifs(workdir):
    result = run(
        workdir,
        *"--name circle --ckpt checkpoint/tiny/000100.pt --loss mse --step 10 --pics 3 --radius 8".split(),
        FACE,
    )
    assert result.returncode == 0, result.stderr
    folder = workdir / "inverse" / "circle"
    for name in ("00006-target.gif", "00006-project.gif"):
        with Image.open(folder / name) as gif:
            assert gif.n_frames == 3
    metrics = json.loads((folder / "00006.json").read_text())
    assert [(run["shift_h"], run["shift_w"]) for run in metrics["results"]] == [(0, 8), (7, -4), (-7, -4)]
    assert all(run["loss_end"] < run["loss_start"] for run in metrics["results"])
    assert metrics["lpips"] is None  # MSE only, and no LPIPS weights given
    for frame in range(3):
        assert (folder / f"00006_{frame:04d}-project.png").exists()
        assert (folder / f"00006_{frame:04d}.pt").exists()


def test_without_network_lpips_says_how_to_proceed(workdir, tmp_path):
    # an empty torch hub cache and an unreachable proxy: torchvision cannot fetch VGG16
    unreachable = "http://127.0.0.1:9"
    offline = dict(os.environ, TORCH_HOME=str(tmp_path), NO_PROXY="", no_proxy="")
    offline.update({name: unreachable for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")})
    result = run(workdir, "--name", "tiny", "--ckpt", "000100.pt", "--step", "1", FACE, env=offline)
    assert result.returncode != 0
    assert "--lpips_weights" in result.stderr and "--loss mse" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_the_lpips_package_lpips_says_how_to_proceed(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # what `import lpips` meets where it is not installed
    with pytest.raises(SystemExit, match=r"pip install lpips .*, or use --loss mse"):
        build_lpips(None, "cpu", alternative="--loss mse")


def test_a_target_that_is_not_an_image_is_an_error(workdir):
    (workdir / "notes.png").write_text("not an image")
    result = run(workdir, "--name", "tiny", "--ckpt", "000100.pt", "--loss", "mse", "notes.png")
    assert result.returncode != 0
    assert "notes.png" in result.stderr and "not an image" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--lr 0", "--lr must be positive, not 0.0"),
        ("--n_mean_latent 1", "--n_mean_latent must be at least 2"),
        ("--lr_rampup -0.1", r"--lr_rampup must be 0 \(no warm-up\) or more, not -0.1"),
        ("--lr_rampdown -1", r"--lr_rampdown must be 0 \(no decay\) or more, not -1.0"),
        ("--noise_ramp -0.5", r"--noise_ramp must be 0 \(no latent noise\) or more, not -0.5"),
        ("--pics 1", r"--pics is 0 \(one projection, no GIFs\) or at least 2, not 1"),
        ("--pics -2", r"--pics is 0 \(one projection, no GIFs\) or at least 2, not -2"),
    ],
)
def test_a_setting_out_of_range_is_refused_by_name_before_loading(flags, message):
    with pytest.raises(SystemExit, match=message):
        projector.main(["--ckpt", "unread.pt", *flags.split(), FACE])


def test_ramps_of_zero_are_none(workdir):
    """--lr_rampup 0: the full learning rate from the first step; --lr_rampdown 0: still full at
    the last; --noise_ramp 0: no latent noise, as --noise 0."""
    assert projector.get_lr(0.0, 0.1, rampup=0) == 0.1
    assert projector.get_lr(0.999, 0.1, rampdown=0) == 0.1
    generator, _ = load_generator(str(workdir / "checkpoint" / "tiny" / "000100.pt"))
    with Image.open(FACE) as face:
        targets = projector.to_target(face.convert("RGB"), 32)[None]

    def latent(**settings):
        settings = projector.ProjectionSettings(step=3, loss="mse", n_mean_latent=16, **settings)
        return next(projector.project_shifted(generator, targets, [(0, 0)], settings))["latent"]

    unramped = latent(lr_rampup=0, lr_rampdown=0, noise_ramp=0)
    assert torch.equal(unramped, latent(lr_rampup=0, lr_rampdown=0, noise=0))
    assert not torch.equal(unramped, latent(lr_rampup=0, lr_rampdown=0))


def test_targets_of_one_file_name_are_refused_naming_both():
    with pytest.raises(SystemExit, match="outputs are named after them [(]faces/00006.png and crops/00006.jpg are"):
        projector.main(["--ckpt", "unread.pt", "faces/00006.png", "crops/00006.jpg"])


def test_checkpoint_of_the_wrong_kind_is_an_error(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    with pytest.raises(SystemExit, match="position"):
        projector.main(["--name", "tiny", "--ckpt", "000100.pt", "--position", "none", "--loss", "mse", FACE])
    torch.save({"weights": torch.zeros(3)}, workdir / "other.pt")
    with pytest.raises(SystemExit, match="not a generator checkpoint"):
        projector.main(["--ckpt", "other.pt", "--loss", "mse", FACE])
    with pytest.raises(SystemExit, match="not found"):
        projector.main(["--name", "tiny", "--ckpt", "missing.pt", "--loss", "mse", FACE])


def test_lpips_weights_that_are_not_vgg16_are_an_error(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    torch.save({"features.0.weight": torch.zeros(1)}, workdir / "small.pt")
    with pytest.raises(SystemExit, match="vgg16"):
        projector.main(["--name", "tiny", "--ckpt", "000100.pt", "--lpips_weights", "small.pt", FACE])


# ---------------------------------------------------------------------------------------------
# against the original code's projector.py


@pytest.fixture(scope="module")
def original_run():
    """tests/data/original_projector.pt holds what the original research code's projector.py
    (jychoi118/toward_spatial_unbiased) did when its __main__ ran on the CPU in float64 (torch's
    default dtype), with this repository's op/ and these changes only: its model.py's channel
    table capped at 16 (our channel_max 16), a latent of 32 where it had 512 (the Generator it
    builds and W's samples), --size 16 from formula_stylegan2_state weights of its 16 px MS-PE
    Generator (loaded strict), stand_in_distance for lpips.PerceptualLoss, and its shift radius.

    - `target`: ref_face/00006.png as its transforms made it, [1, 3, 16, 16].
    - `defaults`: its argparse defaults, and its n_mean_latent (a constant there).
    - `projections`: two runs of --step 100 --pics 1 from torch.manual_seed(0): "w" (no other
      flag, radius 0: unshifted) and "w_plus_shift_mse" (--w_plus --mse 0.5, radius 5: a shift
      of 5 px along x). Each holds its `flags`, `shift` (dh, dw), `latent_mean` and `latent_std`
      (its W statistics); `noise_draws` (what Tensor.normal_ drew for the initial noise maps) and
      `latent_draws` ([100, ...]: what torch.randn_like drew for the latent noise, a step each),
      rounded to float16 and fed rounded; `distances` [100], the stand-in distance at every
      step; `latents` {step: the latent after it}; `noises` and `image`, the optimised noise maps
      and its final render.
    """
    return torch.load(os.path.join(ROOT, "tests", "data", "original_projector.pt"), weights_only=True)


def stand_in_distance(generated, target):
    """The perceptual distance of the reference run, [N, 1, 1, 1] as LPIPS returns it: a smooth
    absolute difference per pixel plus the squared difference of 4 x 4 averages."""
    difference = generated - target
    fine = (difference.pow(2) + 0.01).sqrt().mean((1, 2, 3))
    coarse = F.avg_pool2d(difference, 4).pow(2).mean((1, 2, 3))
    return (fine + coarse).view(-1, 1, 1, 1)


def test_the_defaults_are_the_original_codes(original_run):
    defaults = projector.ProjectionSettings()
    for name, value in original_run["defaults"].items():
        assert getattr(defaults, name) == value, name


def test_targets_are_resized_as_the_original_code_resized_them(original_run):
    with Image.open(FACE) as face:
        target = projector.to_target(face.convert("RGB"), 16)
    # float32 here, float64 there: apart by float32 rounding, where one level of 255 is 7.8e-3
    torch.testing.assert_close(target.double(), original_run["target"][0], atol=1e-7, rtol=0)


# What our float32 projection may differ from the float64 reference by: about 4x the largest
# difference measured over the 100 steps (3.4e-6 in latents of magnitude up to 6.7, 5e-7 of
# them; 4.5e-6 in the noise maps, 2.4e-7 in the image). In float64 the two agree to the last bit.
FLOAT32_TOLERANCES = {"latent": 1e-5, "distance": 5e-7, "noise": 2e-5, "image": 1e-6}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", ["w", "w_plus_shift_mse"])
def test_a_projection_retraces_the_original_codes(original_run, case, dtype, monkeypatch):
    """Our projection with the original run's flags, weights, target, W statistics and random
    draws: the same distance at every step, the same latents along the way, the same noise maps
    and image at the end. Its noise maps stay where they were drawn when it shifts
    (--noise_shift keep); the draws that differ in kind map one to one: its initial noise maps,
    Tensor.normal_ over make_noise's, are our make_noise's torch.randn."""
    reference = original_run["projections"][case]
    previous_dtype = torch.get_default_dtype()
    # its positional encodings were computed in the default dtype, as ours are
    torch.set_default_dtype(dtype)
    try:
        generator = Generator(16, 32, 8, position="mspe", channel_max=16).eval().requires_grad_(False)
        generator.load_state_dict(formula_stylegan2_state(generator.state_dict()), strict=True)
        generator.to(dtype)

        draws = [("randn", value.to(dtype)) for value in reference["noise_draws"]]
        draws += [("randn_like", value) for value in reference["latent_draws"].to(dtype)]
        scripted = ScriptedDraws(draws, monkeypatch)
        statistics = (reference["latent_mean"].to(dtype), reference["latent_std"])
        monkeypatch.setattr(projector, "latent_statistics", lambda *arguments: statistics)
        latents, adam_step = {}, torch.optim.Adam.step

        def step_and_record(optimizer, *arguments, **options):
            result = adam_step(optimizer, *arguments, **options)
            latent = optimizer.param_groups[0]["params"][0]
            latents[int(optimizer.state[latent]["step"])] = latent.detach().clone()
            return result

        monkeypatch.setattr(torch.optim.Adam, "step", step_and_record)
        distances = []

        def percept(generated, target):
            distance = stand_in_distance(generated, target)
            distances.append(distance.detach().flatten())
            return distance

        args = projector.build_parser().parse_args([*reference["flags"], FACE])
        settings = replace(projector.ProjectionSettings.from_args(args), step=100, noise_shift="keep")
        target = original_run["target"].to(dtype)
        projection = next(projector.project_shifted(generator, target, [reference["shift"]], settings, percept))
    finally:
        torch.set_default_dtype(previous_dtype)
    assert not scripted.draws

    def check(actual, expected, kind):
        tolerance = 1e-12 if dtype == torch.float64 else FLOAT32_TOLERANCES[kind]
        torch.testing.assert_close(actual.double(), expected, atol=tolerance, rtol=0)

    # before the loop ours scores the start, after it the end and the reconstruction
    check(torch.cat(distances[1:101]), reference["distances"], "distance")
    for step, latent in reference["latents"].items():
        check(latents[step], latent, "latent")
    check(projection["latent"], reference["latents"][100], "latent")
    for noise, expected in zip(projection["noises"], reference["noises"]):
        check(noise, expected, "noise")
    check(projection["reconstruction"], reference["image"], "image")
