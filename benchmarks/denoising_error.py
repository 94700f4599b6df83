"""How well a diffusion checkpoint denoises at each timestep: why its samples look as they do.

    python benchmarks/denoising_error.py --ckpt checkpoint/ddpm_none/001500.pt --path data/faces

Real images x_0 (rolled at random, as --translate 1.0 trains on them) are noised to x_t at each
of --timesteps, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, and the model predicts eps. The
table gives, per timestep, the epsilon MSE (the training loss at that t) and the MSE of the
estimate x0^ = (x_t - sqrt(1 - abar_t) eps^) / sqrt(abar_t), clipped to [-1, 1], that every
sampler step is built on (GaussianDiffusion.estimate_x0 in diffusion.py), beside the MSE of the
best constant guess, the images' mean. Dividing by sqrt(abar_t) multiplies an epsilon error by
sqrt((1 - abar_t) / abar_t), about 160 at the linear schedule's last step: where x0^ is worse
than the constant, the first sampling steps build on a clipped, saturated guess. `--weights g`
measures the raw weights instead of the EMA's.
"""

import argparse
import os
import sys

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from checkpoint import load_generator  # noqa: E402
from diffusion import DiffusionGenerator  # noqa: E402
from evaluation.common import module_device, open_real_images, real_image_batches  # noqa: E402
from utils.device import choose_device  # noqa: E402
from utils.flags import HelpFormatter, add_device_argument  # noqa: E402
from utils.shift import roll_each  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--ckpt", required=True, help="checkpoint of train.py --arch ddpm")
    parser.add_argument("--path", required=True, help="LMDB of real images (prepare_data.py)")
    parser.add_argument("--n", type=int, default=128, help="real images")
    parser.add_argument("--batch", type=int, default=32, help="images per denoiser call")
    parser.add_argument(
        "--timesteps", type=str, default="0,50,200,500,800,999", help="comma-separated, from 0 to T - 1"
    )
    parser.add_argument("--weights", choices=("g_ema", "g"), default="g_ema", help="the EMA's weights or the raw ones")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images' subset, rolls and noise")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    try:
        args.timesteps = [int(t) for t in args.timesteps.split(",")]
    except ValueError:
        parser.error(f"--timesteps takes comma-separated integers such as 0,500,999, not {args.timesteps!r}")
    return args


@torch.no_grad()
def denoising_errors(generator, images, timesteps, batch, seed=0):
    """[(t, abar_t, epsilon MSE, clipped x0^ MSE)] of `generator` (a DiffusionGenerator) on
    `images` [N, 3, H, W] in [-1, 1], with noise from `seed`."""
    diffusion, denoiser = generator.diffusion, generator.denoiser()
    device = module_device(generator.unet)
    elements = images.numel()
    rows = []
    for t in tqdm(timesteps, desc="timesteps", leave=False):
        if not 0 <= t < diffusion.num_timesteps:
            raise ValueError(f"timestep {t} is outside the model's 0..{diffusion.num_timesteps - 1}")
        rng = torch.Generator().manual_seed(seed + t)
        abar = diffusion.alphas_cumprod[t].item()
        eps_error = x0_error = 0.0
        for start in range(0, len(images), batch):
            x0 = images[start : start + batch].to(device)
            noise = torch.randn(x0.shape, generator=rng).to(device)
            t_batch = torch.full((len(x0),), t, dtype=torch.long, device=device)
            x_t = diffusion.q_sample(x0, t_batch, noise)
            eps = denoiser(x_t, t_batch).float()
            x0_estimate = diffusion.estimate_x0(x_t, eps, abar)
            eps_error += (eps - noise).square().sum().item()
            x0_error += (x0_estimate - x0).square().sum().item()
        rows.append((t, abar, eps_error / elements, x0_error / elements))
    return rows


def main(argv=None):
    args = parse_args(argv)
    device = choose_device(args.device)
    generator, config = load_generator(args.ckpt, device, key=args.weights)
    if not isinstance(generator, DiffusionGenerator):
        raise SystemExit(f"--ckpt {args.ckpt} holds a {config.arch} generator; this measures --arch ddpm checkpoints")
    dataset, indices = open_real_images(args.path, config.size, args.n, args.seed)
    images = torch.cat(list(real_image_batches(dataset, indices, args.batch)))
    offsets = torch.randint(0, config.size, (2, len(images)), generator=torch.Generator().manual_seed(args.seed))
    images = roll_each(images, offsets[0], offsets[1])
    constant = (images - images.mean(0, keepdim=True)).square().mean().item()
    print(f"{args.ckpt} ({args.weights}), {len(images)} real images of {args.path}, rolled at random")
    print()
    print("| t | abar_t | epsilon MSE | clipped x0^ MSE | the images' mean as x0^ |")
    print("|---|---|---|---|---|")
    for t, abar, eps_error, x0_error in denoising_errors(generator, images, args.timesteps, args.batch, args.seed):
        print(f"| {t} | {abar:.2e} | {eps_error:.4f} | {x0_error:.4f} | {constant:.4f} |")


if __name__ == "__main__":
    main()
