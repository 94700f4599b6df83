"""Render images with a trained generator.

Modes (`--mode`), each writing under generate/<name>/<mode>/:

    grid    --n_sample images from seeds --seed, --seed + 1, ... as a grid and single PNGs
    shift   the paper's demo: every sample moved along a circle of --radius pixels over --pics
            frames (shift_h / shift_w), saved as frames and an animated GIF per sample and
            one GIF of the grid
    rotate  every sample turned about the image centre over --pics frames by rotating its input
            (positional models; made for stylegan3-r), frames and GIFs as shift
    scale   the same samples rendered at several scales of the positional grid (--scales)
    canvas  the same samples on a canvas of another size and aspect ratio (--height, --width)
    mix     a style-mixing grid: rows of --row_seeds, columns of --col_seeds, each cell the
            row's latent with the --col_styles layers taken from the column

    python generate.py --name EXPERIMENT_NAME --ckpt 550000.pt --truncation 1.0 --position mspe
    python generate.py --name DDPM_EXPERIMENT --ckpt 006000.pt --mode shift --sampler ddim --steps 50 --eta 0

A diffusion checkpoint (train.py --arch ddpm) renders grid, shift, scale and canvas, sampled as
--sampler, --steps and --eta say; its seed draws the initial noise x_T and the per-step noise.

Every image depends only on its seed (latent and noise are drawn per seed on the CPU), so a
seed gives the same picture in any batch size and on any device.
"""

import argparse
import math
import os
import sys
from dataclasses import dataclass

import torch
from tqdm import tqdm

from checkpoint import add_checkpoint_arguments, load_generator_from_args
from evaluation.equivariance import input_transform, rotate_transform
from model import require_positional
from utils.flags import add_noise_shift_argument, add_sampler_arguments, add_truncation_arguments
from utils.images import save_gif, save_grid, save_grid_gif, to_pil
from utils.shift import DEFAULT_NOISE_SHIFT, circle_shift, move_noise

SAVE_CHOICES = ("both", "grid", "single")
# milliseconds per frame of the shift and rotate animations
FRAME_MS = 60


# ---------------------------------------------------------------------------------------------
# command line


def parse_seeds(text):
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            seeds.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise SystemExit(f"cannot read {text!r} as seeds or layers: use a list like 0-3,7") from None
    return seeds


def parse_scales(text):
    try:
        scales = [float(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"--scales takes positive numbers like 0.5,1,2, not {text!r}") from None
    if any(scale <= 0 for scale in scales):
        raise SystemExit(f"--scales must be positive, not {text!r}")
    return scales


# ---------------------------------------------------------------------------------------------
# latents, noise and rendering


def seed_inputs(generator, seeds, canvas=None, scale=None):
    """Latents z [N, latent] and noise maps ([N, 1, h, w] per layer) for `seeds`.

    Drawn on the CPU from one torch.Generator per seed: independent of device and batching.
    """
    latents, noises = [], []
    for seed in seeds:
        rng = torch.Generator().manual_seed(seed)
        latents.append(torch.randn(1, generator.style_dim, generator=rng))
        noises.append(generator.make_noise(canvas=canvas, scale=scale, rng=rng))
    return torch.cat(latents), [torch.cat(layer) for layer in zip(*noises)]


@dataclass
class Renderer:
    """How images are rendered: `generator`, `batch` images per call, truncation towards
    `truncation_latent` (MappedGenerator.truncation_latent; None: none)."""

    generator: torch.nn.Module
    batch: int = 8
    truncation: float = 1.0
    truncation_latent: torch.Tensor = None

    @classmethod
    def from_args(cls, generator, args):
        """The renderer of a command line's --batch, --truncation and --truncation_mean."""
        return cls(
            generator, args.batch, args.truncation, generator.truncation_latent(args.truncation, args.truncation_mean)
        )

    @torch.no_grad()
    def __call__(self, latents, noises, progress=None, per_sample=None, **options):
        """Images [N, 3, H, W] (CPU) of `latents` (z [N, latent], or w [N, latent] or per layer
        [N, n_latent, latent] with input_is_latent=True) and `noises`. `options` go to the
        generator's forward, and so do the [N, ...] tensors of `per_sample` ({argument: tensor}),
        batched with the latents; `progress`, a tqdm bar, advances by each batch."""
        device = self.generator.device
        images = []
        for start in range(0, len(latents), self.batch):
            stop = start + self.batch
            batched = {name: tensor[start:stop] for name, tensor in (per_sample or {}).items()}
            image, _ = self.generator(
                [latents[start:stop].to(device)],
                noise=[noise[start:stop].to(device) for noise in noises],
                truncation=self.truncation,
                truncation_latent=self.truncation_latent,
                **batched,
                **options,
            )
            images.append(image.float().cpu())
            if progress is not None:
                progress.update(len(image))
        return torch.cat(images)


# ---------------------------------------------------------------------------------------------
# what each mode renders


def grid_images(renderer, seeds):
    """[N, 3, H, W]: one image per seed."""
    latents, noises = seed_inputs(renderer.generator, seeds)
    with tqdm(total=len(latents), desc="grid", unit="img") as progress:
        return renderer(latents, noises, progress)


def shift_frames(renderer, seeds, pics, radius, plane=False, noise_shift=DEFAULT_NOISE_SHIFT):
    """`pics` frames ([N, 3, H, W] each) of every seed's image moved along a circle of `radius`
    pixels; circular shifts unless `plane` (or a generator that cannot wrap, stylegan3-t/-r)."""
    generator = renderer.generator
    if plane:
        require_positional(generator.position, "--plane (an infinite-plane shift)")
    latents, noises = seed_inputs(generator, seeds)
    frames = []
    with tqdm(total=pics * len(latents), desc="shift", unit="img") as progress:
        for frame in range(pics):
            shift_h, shift_w = circle_shift(frame, pics, radius)
            moved = move_noise(noises, shift_h, shift_w, generator.size, generator.size, noise_shift)
            circular = not plane and generator.circular_shifts
            frames.append(renderer(latents, moved, progress, shift_h=shift_h, shift_w=shift_w, circular=circular))
    return frames


def rotate_frames(renderer, seeds, pics):
    """`pics` frames of every seed's image with its input rotated about the image centre through
    a full turn (models with a positional input; StyleGAN3-R is the one built for it)."""
    generator = renderer.generator
    require_positional(generator.position, "--mode rotate (a rotation of the input)")
    latents, noises = seed_inputs(generator, seeds)
    with torch.no_grad():
        w = generator.style(latents.to(generator.device))
        # the input transform of the truncated latents the generator renders
        transforms = input_transform(generator, generator.truncate(w, renderer.truncation, renderer.truncation_latent))
    frames = []
    with tqdm(total=pics * len(w), desc="rotate", unit="img") as progress:
        for frame in range(pics):
            rotated = rotate_transform(transforms, 2 * math.pi * frame / pics, generator)
            frames.append(renderer(w, noises, progress, per_sample={"transform": rotated}, input_is_latent=True))
    return frames


def scale_images(renderer, seeds, scales):
    """{scale: [N, 3, H, W]}: the same latents rendered on positional grids `scales` times finer
    (the noise drawn at each scale's resolution)."""
    for scale in scales:
        renderer.generator.input_grid(scale=scale)  # a scale without whole grid cells fails before any work
    images = {}
    with tqdm(total=len(seeds) * len(scales), desc="scale", unit="img") as progress:
        for scale in scales:
            latents, noises = seed_inputs(renderer.generator, seeds, scale=scale)
            images[scale] = renderer(latents, noises, progress, scale=scale)
    return images


def canvas_images(renderer, seeds, canvas):
    """[N, 3, h, w]: every seed's image on the canvas (h, w)."""
    latents, noises = seed_inputs(renderer.generator, seeds, canvas=canvas)
    with tqdm(total=len(latents), desc="canvas", unit="img") as progress:
        return renderer(latents, noises, progress, canvas=canvas)


def mix_table(renderer, rows, cols, layers):
    """StyleGAN's style-mixing figure as one batch in reading order, len(cols) + 1 a row: a blank
    corner and the column seeds' images on top, then per row seed its image and, per column, its
    per-layer latent with the column's latent on `layers`."""
    generator = renderer.generator
    if not layers or max(layers) >= generator.n_latent:
        raise SystemExit(f"--col_styles must name layers 0..{generator.n_latent - 1} of this generator")
    row_z, row_noise = seed_inputs(generator, rows)
    col_z, col_noise = seed_inputs(generator, cols)
    with torch.no_grad():
        row_w = generator.style(row_z.to(generator.device)).cpu()
        col_w = generator.style(col_z.to(generator.device)).cpu()

    # cell (r, c): row r's per-layer latent with column c's latent on the mixed layers
    mixed = row_w[:, None, None, :].repeat(1, len(cols), generator.n_latent, 1)
    mixed[:, :, layers] = col_w[None, :, None, :]
    mixed = mixed.flatten(0, 1)
    mixed_noise = [noise.repeat_interleave(len(cols), 0) for noise in row_noise]

    with tqdm(total=len(rows) + len(cols) + len(mixed), desc="mix", unit="img") as progress:
        row_images = renderer(row_z, row_noise, progress)
        col_images = renderer(col_z, col_noise, progress)
        cells = renderer(mixed, mixed_noise, progress, input_is_latent=True)

    table = [torch.ones_like(row_images[:1]), col_images]
    for row in range(len(rows)):
        table += [row_images[row : row + 1], cells[row * len(cols) : (row + 1) * len(cols)]]
    return torch.cat(table)


# ---------------------------------------------------------------------------------------------
# modes: render and save


def seed_tag(seed):
    return f"seed{seed:04d}"


def save_images(images, seeds, folder, grid_name, suffix, args):
    """The grid and/or one PNG per seed, as --save asks."""
    if args.save in ("both", "grid"):
        save_grid(images, os.path.join(folder, grid_name))
    if args.save in ("both", "single"):
        for image, seed in zip(images, seeds):
            to_pil(image).save(os.path.join(folder, f"{seed_tag(seed)}{suffix}.png"))


def save_animation(frames, args, folder):
    """Frames ([N, 3, H, W] each) as PNGs and a GIF per seed, and a GIF of the grid, as --save asks."""
    if args.save in ("both", "single"):
        for frame, images in enumerate(frames):
            for image, seed in zip(images, args.seeds):
                to_pil(image).save(os.path.join(folder, f"{seed_tag(seed)}_{frame:04d}.png"))
        for index, seed in enumerate(args.seeds):
            sample_frames = [images[index] for images in frames]
            save_gif(sample_frames, os.path.join(folder, f"{seed_tag(seed)}.gif"), args.duration)
    if args.save in ("both", "grid"):
        save_grid_gif(frames, os.path.join(folder, "grid.gif"), args.duration)


def generate_grid(renderer, args, folder):
    save_images(grid_images(renderer, args.seeds), args.seeds, folder, "grid.png", "", args)


def generate_shift(renderer, args, folder):
    save_animation(
        shift_frames(renderer, args.seeds, args.pics, args.radius, args.plane, args.noise_shift), args, folder
    )


def generate_rotate(renderer, args, folder):
    save_animation(rotate_frames(renderer, args.seeds, args.pics), args, folder)


def generate_scale(renderer, args, folder):
    for scale, images in scale_images(renderer, args.seeds, args.scales).items():
        save_images(images, args.seeds, folder, f"grid_x{scale:g}.png", f"_x{scale:g}", args)


def generate_canvas(renderer, args, folder):
    canvas = (args.height or renderer.generator.size, args.width or renderer.generator.size)
    tag = f"{canvas[0]}x{canvas[1]}"
    save_images(canvas_images(renderer, args.seeds, canvas), args.seeds, folder, f"grid_{tag}.png", f"_{tag}", args)


def generate_mix(renderer, args, folder):
    table = mix_table(renderer, args.row_seeds, args.col_seeds, args.col_styles)
    save_grid(table, os.path.join(folder, "grid.png"), nrow=len(args.col_seeds) + 1)


# --mode: the function that renders and saves it
MODES = {
    "grid": generate_grid,
    "shift": generate_shift,
    "rotate": generate_rotate,
    "scale": generate_scale,
    "canvas": generate_canvas,
    "mix": generate_mix,
}


def build_parser():
    parser = argparse.ArgumentParser(
        description="Generate samples from the generator",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--mode", type=str, default="grid", choices=list(MODES), help="what to render (see the module docstring)"
    )
    parser.add_argument("--n_sample", "--sample", type=int, default=16, help="number of samples (seeds) to render")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed + i")
    parser.add_argument("--batch", type=int, default=8, help="images rendered at once")
    add_truncation_arguments(parser)
    add_sampler_arguments(parser)
    parser.add_argument(
        "--save", type=str, default="both", choices=SAVE_CHOICES, help="write the grid, single images, or both"
    )
    parser.add_argument("--pics", type=int, default=20, help="shift, rotate: frames along the circle or turn")
    parser.add_argument("--radius", type=float, default=32, help="shift: radius of the circle in pixels")
    parser.add_argument("--duration", type=int, default=FRAME_MS, help="shift, rotate: milliseconds per GIF frame")
    parser.add_argument(
        "--plane",
        action="store_true",
        help="shift: move an infinite plane instead of wrapping around (PE models; the alias-free "
        "stylegan3-t/-r always move a plane)",
    )
    add_noise_shift_argument(parser)
    parser.add_argument(
        "--scales", type=str, default="0.5,1,2", help="scale: comma-separated scales of the positional grid"
    )
    parser.add_argument("--height", type=int, default=None, help="canvas: height in pixels (default: --size)")
    parser.add_argument("--width", type=int, default=None, help="canvas: width in pixels (default: --size)")
    parser.add_argument("--row_seeds", type=str, default=None, help="mix: seeds of the rows (default: seed..seed+3)")
    parser.add_argument(
        "--col_seeds", type=str, default=None, help="mix: seeds of the columns (default: seed+4..seed+7)"
    )
    parser.add_argument(
        "--col_styles",
        type=str,
        default=None,
        help="mix: layers whose latent comes from the column (default: 0-6, fewer for small generators)",
    )
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n_sample < 1 or args.batch < 1 or args.pics < 1:
        raise SystemExit("--n_sample, --batch and --pics must be at least 1")
    args.seeds = list(range(args.seed, args.seed + args.n_sample))
    args.scales = parse_scales(args.scales)
    args.row_seeds = parse_seeds(args.row_seeds) if args.row_seeds else list(range(args.seed, args.seed + 4))
    args.col_seeds = parse_seeds(args.col_seeds) if args.col_seeds else list(range(args.seed + 4, args.seed + 8))
    generator, args, _ = load_generator_from_args(parser, args, argv)
    if args.mode in ("mix", "rotate") and generator.style_dim == 0:
        raise SystemExit(f"--mode {args.mode} needs a StyleGAN generator; this is a diffusion model (--arch ddpm)")
    # StyleGAN2's default mixes the coarse and middle layers 0-6; keep the last layer unmixed
    # in generators too small to have them all
    default_styles = range(min(7, generator.n_latent - 1))
    args.col_styles = parse_seeds(args.col_styles) if args.col_styles else list(default_styles)
    try:
        renderer = Renderer.from_args(generator, args)
        folder = os.path.join("generate", args.name, args.mode)
        os.makedirs(folder, exist_ok=True)
        MODES[args.mode](renderer, args, folder)
    except ValueError as error:  # a canvas or scale the generator cannot render
        raise SystemExit(str(error)) from None
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
