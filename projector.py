"""Project images into the latent space of a generator (GAN inversion).

Optimises a latent in W (or W+ with --w_plus) and the per-layer noise maps so that the
generator reproduces each target, against LPIPS (VGG trunk) plus an optional MSE term, with
the learning-rate ramp, latent noise ramp and noise regularisation of StyleGAN2's projector.

    python projector.py --name EXPERIMENT_NAME --w_plus --ckpt 550000.pt --position mspe ref_face/00006.png

Shifted inversion, the paper's experiment: --shift_h/--shift_w roll the target and render with
the same shift (the initial noise maps move with it, --noise_shift); --pics N repeats the
projection at N shifts on a circle of --radius pixels around it and writes GIFs of the targets
and reconstructions. All outputs go to inverse/<name>/: per input the target, the
reconstruction, the latent and noise maps (.pt) and the PSNR and LPIPS of the reconstruction
(.json). Generators without noise inputs (stylegan3-t/-r) optimise the latent alone, and their
shifted renders move the infinite plane of their Fourier input.
"""

import argparse
import json
import math
import os
import sys

import torch
from PIL import UnidentifiedImageError
from torch import optim
from tqdm import tqdm

from checkpoint import add_checkpoint_arguments, load_generator_from_args, model_label
from utils.images import load_rgb, psnr, resize_and_crop, save_gif, to_pil, to_tensor
from evaluation.perceptual import build_lpips, perceptual_input
from utils.shift import DEFAULT_NOISE_SHIFT, NOISE_SHIFTS, circle_shift, integer_translate, move_noise

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
    """Learning rate at progress t in [0, 1]: linear warm-up, cosine ramp-down."""
    lr_ramp = min(1, (1 - t) / rampdown)
    lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
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
    """A PIL image as a [3, size, size] tensor in [-1, 1]: shorter side resized, centre cropped."""
    return to_tensor(resize_and_crop(image, size))


def reconstruction_loss(generated, target, percept, args):
    """Per-image reconstruction loss [N]: LPIPS (or MSE with --loss mse) plus --mse times MSE."""
    mse = (generated - target).pow(2).mean(dim=(1, 2, 3))
    if args.loss == "mse":
        return mse
    distance = percept(perceptual_input(generated), perceptual_input(target)).flatten()
    return distance + args.mse * mse


# ---------------------------------------------------------------------------------------------
# projection


@torch.no_grad()
def latent_statistics(generator, n_mean_latent, seed):
    """Mean [style_dim] and spread (one number) of W, from n_mean_latent mapped samples."""
    latent_out = generator.sample_w(n_mean_latent, seed=seed)
    latent_mean = latent_out.mean(0)
    latent_std = ((latent_out - latent_mean).pow(2).sum() / n_mean_latent) ** 0.5
    return latent_mean, latent_std.item()


def project(generator, targets, shift_h, shift_w, percept, latent_mean, latent_std, args, desc):
    """Optimise latents and noises for `targets` rendered at (shift_h, shift_w), starting from
    noise maps drawn from the global RNG and moved with the shift (--noise_shift).

    Returns (latent, noises, reconstruction, loss at the start [N], loss at the end [N]).
    """
    batch = len(targets)
    size = generator.size
    noises = move_noise(generator.make_noise(batch), shift_h, shift_w, size, size, args.noise_shift)
    latent_in = latent_mean.detach().clone().unsqueeze(0).repeat(batch, 1)
    if args.w_plus:
        latent_in = latent_in.unsqueeze(1).repeat(1, generator.n_latent, 1)
    latent_in.requires_grad = True
    for noise in noises:
        noise.requires_grad = True
    optimizer = optim.Adam([latent_in] + noises, lr=args.lr)

    def render(latent):
        image, _ = generator(
            [latent], input_is_latent=True, noise=noises, shift_h=shift_h, shift_w=shift_w,
            circular=generator.circular_shifts,
        )
        return image

    with torch.no_grad():
        loss_start = reconstruction_loss(render(latent_in), targets, percept, args)

    progress = tqdm(range(args.step), desc=desc)
    for i in progress:
        t = i / args.step
        lr = get_lr(t, args.lr, args.lr_rampdown, args.lr_rampup)
        optimizer.param_groups[0]["lr"] = lr
        noise_strength = latent_std * args.noise * max(0, 1 - t / args.noise_ramp) ** 2

        generated = render(latent_noise(latent_in, noise_strength))
        r_loss = reconstruction_loss(generated, targets, percept, args).sum()
        n_loss = noise_regularize(noises)
        loss = r_loss + args.noise_regularize * n_loss

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        noise_normalize_(noises)

        progress.set_postfix_str(
            f"{args.loss}: {r_loss.item() / batch:.4f}; noise regularize: {n_loss.item():.4f}; lr: {lr:.4f}"
        )

    with torch.no_grad():
        reconstruction = render(latent_in)
        loss_end = reconstruction_loss(reconstruction, targets, percept, args)
    return latent_in.detach(), [noise.detach() for noise in noises], reconstruction, loss_start, loss_end


def shifts(args):
    """(tag, shift_h, shift_w) of every projection: one, or --pics on the circle around it."""
    if not args.pics:
        return [("", args.shift_h, args.shift_w)]
    jobs = []
    for frame in range(args.pics):
        circle_h, circle_w = circle_shift(frame, args.pics, args.radius)
        jobs.append((f"_{frame:04d}", args.shift_h + round(circle_h), args.shift_w + round(circle_w)))
    return jobs


def build_parser():
    parser = argparse.ArgumentParser(
        description="Image projector to the generator latent spaces",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--lr_rampup", type=float, default=0.05, help="duration of the learning rate warmup")
    parser.add_argument("--lr_rampdown", type=float, default=0.25, help="duration of the learning rate decay")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate")
    parser.add_argument("--noise", type=float, default=0.05, help="strength of the noise level")
    parser.add_argument("--noise_ramp", type=float, default=0.75, help="duration of the noise level decay")
    parser.add_argument("--step", type=int, default=1000, help="optimize iterations")
    parser.add_argument("--noise_regularize", type=float, default=1e5, help="weight of the noise regularization")
    parser.add_argument("--mse", type=float, default=0, help="weight of the mse loss (added to LPIPS)")
    parser.add_argument("--loss", type=str, default="lpips", choices=LOSSES, help="lpips (VGG), or pixel mse only")
    parser.add_argument("--lpips_weights", type=str, default=None,
                        help="local torchvision vgg16 state dict for LPIPS's trunk (no download); "
                        "with --loss mse it still gives the LPIPS metric")
    parser.add_argument("--w_plus", action="store_true", help="allow to use distinct latent codes to each layers")
    parser.add_argument("--n_mean_latent", type=int, default=10000, help="samples for the mean and spread of W")
    parser.add_argument("--shift_h", type=int, default=0,
                        help="roll the target down by this many pixels and shift the generator alike")
    parser.add_argument("--shift_w", type=int, default=0,
                        help="roll the target right by this many pixels and shift the generator alike")
    parser.add_argument("--pics", type=int, default=0,
                        help="project at this many shifts on a circle around the shift and write GIFs")
    parser.add_argument("--radius", type=float, default=32, help="radius of the --pics circle in pixels")
    parser.add_argument("--noise_shift", type=str, default=DEFAULT_NOISE_SHIFT, choices=NOISE_SHIFTS,
                        help="the initial noise maps move with the shift, or keep their place in the frame")
    parser.add_argument("--duration", type=int, default=120, help="milliseconds per GIF frame")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise maps and the latent noise")
    parser.add_argument("files", metavar="FILES", nargs="+", help="path to image files to be projected")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.step < 1 or args.pics < 0:
        raise SystemExit("--step must be at least 1 and --pics at least 0")
    stems = [os.path.splitext(os.path.basename(path))[0] for path in args.files]
    if len(set(stems)) < len(stems):
        raise SystemExit("the targets' file names must differ: outputs are named after them")
    images = open_images(args.files)

    generator, args, device = load_generator_from_args(parser, args, argv)
    generator.requires_grad_(False)
    targets = torch.stack([to_target(image, args.size) for image in images]).to(device)
    percept = build_lpips(args.lpips_weights, device, alternative="--loss mse") if args.loss == "lpips" or args.lpips_weights else None

    latent_mean, latent_std = latent_statistics(generator, args.n_mean_latent, args.seed)
    folder = os.path.join("inverse", args.name)
    os.makedirs(folder, exist_ok=True)

    results = {stem: [] for stem in stems}
    frames = {stem: ([], []) for stem in stems}  # targets, reconstructions
    for tag, shift_h, shift_w in shifts(args):
        torch.manual_seed(args.seed)  # every shift starts from the same initial noise
        shifted, _ = integer_translate(targets, shift_h, shift_w)
        latent, noises, reconstruction, loss_start, loss_end = project(
            generator, shifted, shift_h, shift_w, percept, latent_mean, latent_std, args,
            desc=f"shift ({shift_h}, {shift_w})",
        )
        with torch.no_grad():
            scores = psnr((reconstruction.clamp(-1, 1) - shifted).pow(2).mean(dim=(1, 2, 3)))
            distances = None
            if percept is not None:
                distances = percept(perceptual_input(reconstruction), perceptual_input(shifted)).flatten()

        for index, stem in enumerate(stems):
            name = f"{stem}{tag}"
            to_pil(shifted[index]).save(os.path.join(folder, f"{name}-target.png"))
            to_pil(reconstruction[index]).save(os.path.join(folder, f"{name}-project.png"))
            torch.save(
                {
                    "img": reconstruction[index].cpu(),
                    "latent": latent[index : index + 1].cpu(),
                    "noise": [noise[index : index + 1].cpu() for noise in noises],
                    "shift_h": shift_h,
                    "shift_w": shift_w,
                },
                os.path.join(folder, f"{name}.pt"),
            )
            results[stem].append(
                {
                    "shift_h": shift_h,
                    "shift_w": shift_w,
                    "psnr": scores[index].item(),
                    "lpips": distances[index].item() if distances is not None else None,
                    "loss_start": loss_start[index].item(),
                    "loss_end": loss_end[index].item(),
                    "reconstruction": f"{name}-project.png",
                    "latent": f"{name}.pt",
                }
            )
            frames[stem][0].append(shifted[index].cpu())
            frames[stem][1].append(reconstruction[index].cpu())

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
