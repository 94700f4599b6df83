"""Project images into the latent space of a generator (GAN inversion).

Optimises a latent in W (or W+ with --w_plus) and the per-layer noise maps so that the
generator reproduces each target, against LPIPS (VGG trunk) plus an optional MSE term, with
the learning-rate ramp, latent noise ramp and noise regularisation of StyleGAN2's projector.

    python projector.py --name EXPERIMENT_NAME --w_plus --ckpt 550000.pt --position mspe ref_face/00006.png

Shifted inversion, the paper's experiment: --shift_h/--shift_w roll the target and render with
the same shift (the initial noise maps move with it, --noise_shift); --pics N repeats the
projection at N shifts on a circle of --radius pixels around it and writes GIFs of the targets
and reconstructions. All outputs go to inverse/<name>/: per input the target, the
reconstruction, the latent, noise maps and checkpoint file (.pt, `save_projection`;
generate.py and apply_factor.py read them back with --projection) and the PSNR and LPIPS of
the reconstruction (.json). Generators without noise inputs (stylegan3-t/-r) optimise the
latent alone, and their shifted renders move the infinite plane of their Fourier input.

The defaults, the targets' resizing and every step of the optimisation are the original code's
(tests/test_projector.py replays its run). It differs on purpose where the original could not
do what is asked: targets are centre-cropped to a square (it took square images only) and kept
at the generator's size, LPIPS seeing both pooled to 256 px (it resized them to 256, so above
256 px its shift moved target and render by different amounts); shifts move both axes to the
whole pixel nearest the circle (it rolled the target along x only, truncating); the initial noise
maps move with the shift (--noise_shift keep leaves them, as it did); every shift starts from
the same noise maps (--seed), and W's mean comes from seeded draws; with several targets each
image's noise maps are normalised alone and its MSE is its own (it normalised and averaged over
the batch); the reconstruction renders the last step's latent (it took the latent of the last
multiple of 100 steps, and failed under 100).
"""

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass

import torch
from PIL import Image, UnidentifiedImageError
from torch import optim
from tqdm import tqdm

from checkpoint import add_checkpoint_arguments, load_generator_from_args, model_label, warn_other_checkpoint
from evaluation.perceptual import build_lpips, perceptual_input
from utils.flags import (
    HelpFormatter,
    add_duration_argument,
    add_lpips_weights_argument,
    add_noise_shift_argument,
    add_radius_argument,
    distinct_stems,
    positive_int,
)
from utils.images import load_rgb, psnr, resize_and_crop, save_gif, to_pil, to_tensor
from utils.settings import FlagSettings
from utils.shift import DEFAULT_NOISE_SHIFT, circle_shift, integer_translate, move_noise

LOSSES = ("lpips", "mse")


def noise_regularize(noises):
    """Squared autocorrelation of every noise map at one-pixel lag, over a pyramid down to 8x8
    (a zero tensor for generators without noise maps)."""
    loss = torch.zeros(())
    for noise in noises:
        size = noise.shape[2]
        while True:
            loss = (
                loss
                + (noise * torch.roll(noise, shifts=1, dims=3)).mean().pow(2)
                + (noise * torch.roll(noise, shifts=1, dims=2)).mean().pow(2)
            )
            if size <= 8:
                break
            noise = noise.reshape([-1, 1, size // 2, 2, size // 2, 2]).mean([3, 5])
            size //= 2
    return loss


def noise_normalize_(noises):
    """Renormalise every image's noise map to zero mean and unit variance, in place."""
    for noise in noises:
        mean = noise.mean(dim=(1, 2, 3), keepdim=True)
        std = noise.std(dim=(1, 2, 3), keepdim=True)
        noise.data.sub_(mean).div_(std)


def get_lr(t, initial_lr, rampdown=0.25, rampup=0.05):
    """Learning rate at progress t in [0, 1]: linear warm-up over the first `rampup` of it, cosine
    ramp-down over the last `rampdown` (a ramp of 0: none)."""
    lr_ramp = 1.0
    if rampdown:
        lr_ramp = 0.5 - 0.5 * math.cos(min(1, (1 - t) / rampdown) * math.pi)
    if rampup:
        lr_ramp = lr_ramp * min(1, t / rampup)
    return initial_lr * lr_ramp


def latent_noise(latent, strength):
    return latent + torch.randn_like(latent) * strength


# ---------------------------------------------------------------------------------------------
# inputs and losses


def open_images(paths):
    """The files as RGB PIL images; a missing or unreadable file is a clear error."""
    images = []
    for path in paths:
        if not os.path.isfile(path):
            raise SystemExit(f"target {path!r} not found")
        try:
            images.append(load_rgb(path))
        except (UnidentifiedImageError, OSError) as error:
            raise SystemExit(f"target {path!r} is not an image Pillow can read ({error})") from None
    return images


def to_target(image, size):
    """A PIL image as a [3, size, size] tensor in [-1, 1]: shorter side resized bilinearly (the
    original code's transforms.Resize, pixel for pixel), centre cropped."""
    return to_tensor(resize_and_crop(image, size, Image.BILINEAR))


def reconstruction_loss(generated, target, percept, settings, mask=None):
    """Per-image reconstruction loss [N]: LPIPS (or MSE with loss 'mse') plus settings.mse times MSE.
    `mask` [1, 1, H, W] (0 where the target has no content, which it holds as 0) leaves those
    pixels out: the generated image is 0 there too."""
    if mask is not None:
        generated = generated * mask
    mse = (generated - target).pow(2).mean(dim=(1, 2, 3))
    if settings.loss == "mse":
        return mse
    distance = percept(perceptual_input(generated), perceptual_input(target)).flatten()
    return distance + settings.mse * mse


# ---------------------------------------------------------------------------------------------
# projection


@dataclass(frozen=True)
class ProjectionSettings(FlagSettings):
    """How a projection optimises, and the one place these defaults live: projector.py's flags of
    the same names take them from here.

    step: Adam steps at learning rate lr, warmed up over the first lr_rampup and ramped down
    (cosine) over the last lr_rampdown of them (a ramp of 0: none). noise: strength of the noise
    added to the latent (times W's spread), decaying to none over the first noise_ramp of the
    steps (0: no latent noise at all). noise_regularize: weight of the noise maps'
    autocorrelation penalty (the original code's 1e3; rosinality's projector has 1e5). loss:
    'lpips' (plus mse times the pixel MSE) or 'mse'. w_plus: one latent per layer (W+) instead of
    one for all (W). noise_shift: what a shift does to the initial noise maps. n_mean_latent:
    mapped samples for W's mean and spread.
    """

    step: int = 1000
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    noise: float = 0.05
    noise_ramp: float = 0.75
    noise_regularize: float = 1e3
    mse: float = 0.0
    loss: str = "lpips"
    w_plus: bool = False
    noise_shift: str = DEFAULT_NOISE_SHIFT
    n_mean_latent: int = 10000


@torch.no_grad()
def latent_statistics(generator, n_mean_latent, seed):
    """Mean [style_dim] and spread (one number) of W, from n_mean_latent mapped samples."""
    latent_out = generator.sample_w(n_mean_latent, seed=seed)
    latent_mean = latent_out.mean(0)
    latent_std = ((latent_out - latent_mean).pow(2).sum() / n_mean_latent) ** 0.5
    return latent_mean, latent_std.item()


def project(generator, targets, shift_h, shift_w, percept, latent_mean, latent_std, settings, desc, mask=None):
    """Optimise latents and noises for `targets` rendered at (shift_h, shift_w), starting from
    noise maps drawn from the global RNG and moved with the shift (settings.noise_shift), compared
    where `mask` is 1 (None: everywhere; see reconstruction_loss).

    Returns (latent, noises, reconstruction, loss at the start [N], loss at the end [N]).
    """
    batch = len(targets)
    size = generator.size
    noises = move_noise(generator.make_noise(batch), shift_h, shift_w, size, size, settings.noise_shift)
    latent_in = latent_mean.detach().clone().unsqueeze(0).repeat(batch, 1)
    if settings.w_plus:
        latent_in = latent_in.unsqueeze(1).repeat(1, generator.n_latent, 1)
    latent_in.requires_grad = True
    for noise in noises:
        noise.requires_grad = True
    optimizer = optim.Adam([latent_in] + noises, lr=settings.lr)

    def render(latent):
        image, _ = generator(
            [latent],
            input_is_latent=True,
            noise=noises,
            shift_h=shift_h,
            shift_w=shift_w,
            circular=generator.circular_shifts,
        )
        return image

    with torch.no_grad():
        loss_start = reconstruction_loss(render(latent_in), targets, percept, settings, mask)

    progress = tqdm(range(settings.step), desc=desc)
    for i in progress:
        t = i / settings.step
        lr = get_lr(t, settings.lr, settings.lr_rampdown, settings.lr_rampup)
        optimizer.param_groups[0]["lr"] = lr
        decay = max(0, 1 - t / settings.noise_ramp) ** 2 if settings.noise_ramp else 0
        noise_strength = latent_std * settings.noise * decay

        generated = render(latent_noise(latent_in, noise_strength))
        r_loss = reconstruction_loss(generated, targets, percept, settings, mask).sum()
        n_loss = noise_regularize(noises)
        loss = r_loss + settings.noise_regularize * n_loss

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        noise_normalize_(noises)

        progress.set_postfix_str(
            f"{settings.loss}: {r_loss.item() / batch:.4f}; noise regularize: {n_loss.item():.4f}; lr: {lr:.4f}"
        )

    with torch.no_grad():
        reconstruction = render(latent_in)
        loss_end = reconstruction_loss(reconstruction, targets, percept, settings, mask)
    return latent_in.detach(), [noise.detach() for noise in noises], reconstruction, loss_start, loss_end


def circle_shifts(pics, radius, shift_h=0, shift_w=0):
    """`pics` whole-pixel shifts on a circle of `radius` pixels around (shift_h, shift_w)."""
    return [
        (shift_h + round(circle_h), shift_w + round(circle_w))
        for circle_h, circle_w in (circle_shift(frame, pics, radius) for frame in range(pics))
    ]


def project_shifted(generator, targets, shifts, settings=ProjectionSettings(), percept=None, seed=0):
    """Project `targets` ([N, 3, size, size] in [-1, 1]) at every whole-pixel (shift_h, shift_w)
    of `shifts`: the targets rolled by the shift, the generator rendering with the same shift, each
    shift from the same initial noise (`seed`). `percept`: LPIPS, for loss 'lpips' and to score.

    Yields one dict per shift as soon as it is done: shift_h, shift_w, target (the rolled
    targets), reconstruction, latent, noises, psnr [N] (dB, of the clamped reconstruction), lpips
    [N] (None without `percept`), loss_start and loss_end [N].
    """
    latent_mean, latent_std = latent_statistics(generator, settings.n_mean_latent, seed)
    for shift_h, shift_w in shifts:
        torch.manual_seed(seed)  # every shift starts from the same initial noise
        # a generator whose shifts move an infinite plane (the alias-free one) has no wrapped-in
        # content to match: its targets move with zero fill, compared where they hold an image
        shifted, mask = integer_translate(targets, shift_h, shift_w, generator.circular_shifts)
        mask = None if generator.circular_shifts else mask
        latent, noises, reconstruction, loss_start, loss_end = project(
            generator,
            shifted,
            shift_h,
            shift_w,
            percept,
            latent_mean,
            latent_std,
            settings,
            desc=f"shift ({shift_h}, {shift_w})",
            mask=mask,
        )
        with torch.no_grad():
            compared = reconstruction if mask is None else reconstruction * mask
            error = (compared.clamp(-1, 1) - shifted).pow(2)
            if mask is None:
                scores = psnr(error.mean(dim=(1, 2, 3)))
            else:
                scores = psnr(error.sum(dim=(1, 2, 3)) / (mask.sum() * error.shape[1]))
            distances = None
            if percept is not None:
                distances = percept(perceptual_input(compared), perceptual_input(shifted)).flatten()
        yield {
            "shift_h": shift_h,
            "shift_w": shift_w,
            "target": shifted,
            "reconstruction": reconstruction,
            "latent": latent,
            "noises": noises,
            "psnr": scores,
            "lpips": distances,
            "loss_start": loss_start,
            "loss_end": loss_end,
        }


# ---------------------------------------------------------------------------------------------
# projection files: what main writes per target, and the one reader of them


def save_projection(path, reconstruction, latent, noises, shift_h, shift_w, checkpoint):
    """A projection file: the reconstruction `img` [3, H, W], the optimised `latent` [1, style_dim]
    (W) or [1, n_latent, style_dim] (W+), its noise maps `noise` ([1, 1, h, w] per layer; none
    for generators without noise inputs), the shift (`shift_h`, `shift_w`) it renders at and the
    `ckpt` file of the generator it was projected into."""
    torch.save(
        {
            "ckpt": checkpoint,
            "img": reconstruction.cpu(),
            "latent": latent.cpu(),
            "noise": [noise.cpu() for noise in noises],
            "shift_h": shift_h,
            "shift_w": shift_w,
        },
        path,
    )


def load_projection(path, generator, checkpoint=None):
    """The projection file at `path` (save_projection) checked against `generator`: a dict of
    `latent` (float [1, style_dim] or [1, n_latent, style_dim]), `noise`, `shift_h`, `shift_w`
    and `img`. A latent or noise map of another shape is an error naming both shapes; a file
    projected into another checkpoint than `checkpoint` (the generator's file) is a warning."""
    if not os.path.isfile(path):
        raise SystemExit(f"projection {path!r} not found; make it with: python projector.py --ckpt CKPT IMAGE")
    try:
        projection = torch.load(path, map_location="cpu", weights_only=True)
        latent, noises = projection["latent"].float(), [noise.float() for noise in projection["noise"]]
        shift_h, shift_w = projection["shift_h"], projection["shift_w"]
    except Exception as error:
        raise SystemExit(f"{path} is not a projection file of projector.py ({error})") from None
    w_shape = (1, generator.style_dim)
    w_plus_shape = (1, generator.n_latent, generator.style_dim)
    if tuple(latent.shape) not in (w_shape, w_plus_shape):
        raise SystemExit(
            f"{path} holds a latent of shape {list(latent.shape)}, this generator takes {list(w_shape)} (W) or "
            f"{list(w_plus_shape)} (W+): project the image with this checkpoint"
        )
    noise_shapes = [(1, 1, *shape) for shape in generator.noise_shapes()] if hasattr(generator, "noise_shapes") else []
    if [tuple(noise.shape) for noise in noises] != noise_shapes:
        raise SystemExit(
            f"{path} holds noise maps of shapes {[list(noise.shape) for noise in noises]}, this generator takes "
            f"{[list(shape) for shape in noise_shapes]}: project the image with this checkpoint"
        )
    warn_other_checkpoint(path, projection.get("ckpt"), checkpoint, "latents")
    return {"latent": latent, "noise": noises, "shift_h": shift_h, "shift_w": shift_w, "img": projection.get("img")}


DEFAULTS = ProjectionSettings()


def build_parser():
    parser = argparse.ArgumentParser(
        description="Image projector to the generator latent spaces", formatter_class=HelpFormatter, allow_abbrev=False
    )
    add_checkpoint_arguments(parser)
    add = parser.add_argument
    add(
        "--lr_rampup",
        type=float,
        default=DEFAULTS.lr_rampup,
        help="fraction of the steps the learning rate warms up over (0: full from the first step)",
    )
    add(
        "--lr_rampdown",
        type=float,
        default=DEFAULTS.lr_rampdown,
        help="fraction of the steps the learning rate decays over at the end (0: no decay)",
    )
    add("--lr", type=float, default=DEFAULTS.lr, help="learning rate")
    add("--noise", type=float, default=DEFAULTS.noise, help="strength of the noise level")
    add(
        "--noise_ramp",
        type=float,
        default=DEFAULTS.noise_ramp,
        help="fraction of the steps the latent noise decays to none over (0: no latent noise)",
    )
    add("--step", type=positive_int, default=DEFAULTS.step, help="optimisation steps")
    add("--noise_regularize", type=float, default=DEFAULTS.noise_regularize, help="weight of the noise regularization")
    add("--mse", type=float, default=DEFAULTS.mse, help="weight of the mse loss (added to LPIPS)")
    add("--loss", type=str, default=DEFAULTS.loss, choices=LOSSES, help="lpips (VGG), or pixel mse only")
    add_lpips_weights_argument(parser)
    add("--w_plus", action="store_true", help="optimise a latent per layer (W+), not one for all (W)")
    add("--n_mean_latent", type=int, default=DEFAULTS.n_mean_latent, help="samples for the mean and spread of W")
    parser.add_argument(
        "--shift_h", type=int, default=0, help="roll the target down by this many pixels and shift the generator alike"
    )
    parser.add_argument(
        "--shift_w", type=int, default=0, help="roll the target right by this many pixels and shift the generator alike"
    )
    parser.add_argument(
        "--pics",
        type=int,
        default=0,
        help="project at this many shifts (at least 2) on a circle around the shift and write GIFs",
    )
    add_radius_argument(parser, "--pics: ")
    add_noise_shift_argument(parser)
    add_duration_argument(parser, 120)
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise maps and the latent noise")
    parser.add_argument("files", metavar="FILES", nargs="+", help="path to image files to be projected")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pics < 0 or args.pics == 1:
        raise SystemExit(f"--pics is 0 (one projection, no GIFs) or at least 2, not {args.pics}")
    if args.lr <= 0:
        raise SystemExit(f"--lr must be positive, not {args.lr}")
    for flag, zero in (("lr_rampup", "no warm-up"), ("lr_rampdown", "no decay"), ("noise_ramp", "no latent noise")):
        if getattr(args, flag) < 0:
            raise SystemExit(f"--{flag} must be 0 ({zero}) or more, not {getattr(args, flag)}")
    if args.n_mean_latent < 2:
        raise SystemExit(f"--n_mean_latent must be at least 2 (the spread of W takes two), not {args.n_mean_latent}")
    stems = distinct_stems(args.files, "targets")
    images = open_images(args.files)

    generator, args, device = load_generator_from_args(parser, args, argv, gan_only="projection (into W or W+)")
    generator.requires_grad_(False)
    shifts = (
        circle_shifts(args.pics, args.radius, args.shift_h, args.shift_w)
        if args.pics
        else [(args.shift_h, args.shift_w)]
    )
    if not generator.circular_shifts and any(max(abs(h), abs(w)) >= args.size for h, w in shifts):
        raise SystemExit(
            f"{model_label(args)} shifts move an infinite plane: a shift of {args.size} px or more leaves no image "
            f"to compare; keep --shift_h/--shift_w (plus --radius with --pics) below {args.size}"
        )
    targets = torch.stack([to_target(image, args.size) for image in images]).to(device)
    percept = (
        build_lpips(args.lpips_weights, device, alternative="--loss mse")
        if args.loss == "lpips" or args.lpips_weights
        else None
    )

    folder = os.path.join("inverse", args.name)
    os.makedirs(folder, exist_ok=True)

    settings = ProjectionSettings.from_args(args)
    results = {stem: [] for stem in stems}
    frames = {stem: ([], []) for stem in stems}  # targets, reconstructions
    projections = project_shifted(generator, targets, shifts, settings, percept, args.seed)
    for frame, projection in enumerate(projections):
        tag = f"_{frame:04d}" if args.pics else ""
        for index, stem in enumerate(stems):
            name = f"{stem}{tag}"
            target, reconstruction = projection["target"][index], projection["reconstruction"][index]
            to_pil(target).save(os.path.join(folder, f"{name}-target.png"))
            to_pil(reconstruction).save(os.path.join(folder, f"{name}-project.png"))
            save_projection(
                os.path.join(folder, f"{name}.pt"),
                reconstruction,
                projection["latent"][index : index + 1],
                [noise[index : index + 1] for noise in projection["noises"]],
                projection["shift_h"],
                projection["shift_w"],
                args.ckpt,
            )
            lpips_distances = projection["lpips"]
            results[stem].append(
                {
                    "shift_h": projection["shift_h"],
                    "shift_w": projection["shift_w"],
                    "psnr": projection["psnr"][index].item(),
                    "lpips": lpips_distances[index].item() if lpips_distances is not None else None,
                    "loss_start": projection["loss_start"][index].item(),
                    "loss_end": projection["loss_end"][index].item(),
                    "reconstruction": f"{name}-project.png",
                    "latent": f"{name}.pt",
                }
            )
            frames[stem][0].append(target.cpu())
            frames[stem][1].append(reconstruction.cpu())

    for path, stem in zip(args.files, stems):
        runs = results[stem]
        lpips_values = [run["lpips"] for run in runs if run["lpips"] is not None]
        summary = {
            "file": path,
            "checkpoint": args.ckpt,
            "position": model_label(args),
            "w_plus": args.w_plus,
            "loss": args.loss,
            "step": args.step,
            "psnr": sum(run["psnr"] for run in runs) / len(runs),
            "lpips": sum(lpips_values) / len(lpips_values) if lpips_values else None,
            "results": runs,
        }
        with open(os.path.join(folder, f"{stem}.json"), "w") as file:
            json.dump(summary, file, indent=2)
        if args.pics:
            save_gif(frames[stem][0], os.path.join(folder, f"{stem}-target.gif"), args.duration)
            save_gif(frames[stem][1], os.path.join(folder, f"{stem}-project.gif"), args.duration)
        lpips_text = "n/a (needs --loss lpips or --lpips_weights)"
        if summary["lpips"] is not None:
            lpips_text = f"{summary['lpips']:.4f}"
        print(f"{path}: PSNR {summary['psnr']:.2f} dB, LPIPS {lpips_text}")
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
