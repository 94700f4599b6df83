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
    interpolate  a walk through the latents of the seeds (or --projection files) in order,
            --frames_per_step frames from one to the next, linear in W; the noise maps blend
            with their variance kept, so every seed's own image is a frame. An mp4 with the
            optional imageio-ffmpeg installed, a GIF otherwise
    sticking  texture sticking (evaluation/sticking.py): the average of --n_sample renders
            around the central latent of --seed (--spread of the way to independent latents,
            all with the centre's noise maps), the central image, and the interpolation strip,
            row --row (default the centre row) of --pics frames walking from the centre to
            another latent; PNGs, and the sticking number of that centre printed

    python generate.py --name EXPERIMENT_NAME --ckpt 550000.pt --truncation 1.0 --position mspe
    python generate.py --name DDPM_EXPERIMENT --ckpt 006000.pt --mode shift --sampler ddim --steps 50 --eta 0

A diffusion checkpoint (train.py --arch ddpm) renders grid, shift, scale and canvas, sampled as
--sampler, --steps and --eta say; its seed draws the initial noise x_T and the per-step noise.
Its walks (interpolate) and sticking pictures blend x_T and sample it with deterministic DDIM
(DiffusionRenderer).

Every image depends only on its seed (latent and noise are drawn per seed on the CPU), so a
seed gives the same picture in any batch size and on any device, to float rounding (another
batch size or device rounds the arithmetic differently). `--projection FILE.pt ...`
renders the latents and noise maps that projector.py optimised, at their shift, instead of
seeds (modes grid, shift, interpolate and sticking, whose centres they then are).
"""

import argparse
import dataclasses
import math
import os
import sys

import torch
from tqdm import tqdm

from checkpoint import add_checkpoint_arguments, explicit_flags, load_generator_from_args
from diffusion import DiffusionGenerator
from evaluation.sticking import neighbour_seeds, sticking_pictures
from model import require_positional
from projector import load_projection
from utils.flags import (
    HelpFormatter,
    add_duration_argument,
    add_noise_shift_argument,
    add_radius_argument,
    add_sampler_arguments,
    add_spread_argument,
    add_truncation_arguments,
    distinct_stems,
    positive_int,
)
from utils.images import save_gif, save_grid, save_grid_gif, save_video, to_pil
from utils.shift import DEFAULT_NOISE_SHIFT, circle_shift, move_noise

SAVE_CHOICES = ("both", "grid", "single")
# milliseconds per frame of the shift, rotate and interpolate animations
FRAME_MS = 60
# the modes that render --projection files instead of seeds
PROJECTION_MODES = ("grid", "shift", "interpolate", "sticking")
# the flags only some modes read (the `dest` of each, and those modes)
MODE_FLAGS = {
    "save": ("grid", "shift", "rotate", "scale", "canvas"),
    "pics": ("shift", "rotate", "sticking"),
    "radius": ("shift",),
    "duration": ("shift", "rotate", "interpolate"),
    "plane": ("shift",),
    "noise_shift": ("shift",),
    "scales": ("scale",),
    "height": ("canvas",),
    "width": ("canvas",),
    "row_seeds": ("mix",),
    "col_seeds": ("mix",),
    "col_styles": ("mix",),
    "frames_per_step": ("interpolate",),
    "spread": ("sticking",),
    "row": ("sticking",),
}


# ---------------------------------------------------------------------------------------------
# command line


def warn_unread_flags(mode, explicit):
    """Warn of the flags in `explicit` (dests) that --mode `mode` does not read. A warning, not a
    refusal: rosinality's generate.py takes --pics for the number of grids, which a grid ignores."""
    for flag, modes in MODE_FLAGS.items():
        if flag in explicit and mode not in modes:
            print(f"warning: --mode {mode} ignores --{flag} (read by --mode {', '.join(modes)})", file=sys.stderr)


def parse_seeds(text):
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            first, last = int(first), int(last or first)
        except ValueError:
            raise SystemExit(f"cannot read {text!r} as seeds or layers: use a list like 0-3,7") from None
        if last < first:
            raise SystemExit(f"{part.strip()!r} in {text!r} counts down and lists nothing: write {last}-{first}")
        seeds.extend(range(first, last + 1))
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


def as_w_plus(w, n_latent):
    """Latents of W+ [N, n_latent, latent]: w [N, latent] repeated on every layer, W+ as it is."""
    return w if w.ndim == 3 else w.unsqueeze(1).expand(-1, n_latent, -1)


@dataclasses.dataclass
class Renderer:
    """How images are rendered: `generator`, `batch` images per call, truncation towards
    `truncation_latent` (MappedGenerator.truncation_latent; None: none).

    Walks (interpolate) and texture sticking (evaluation/sticking.py, metrics.py sticking, the
    spatial-bias report) see a generator only through `seed_latents`, `blend` and
    `render_latents`: latents in the space they are blended in, W for the GANs. Another kind of
    generator joins them by overriding those three in a subclass that `renderer_for` picks for
    it (DiffusionRenderer).
    """

    generator: torch.nn.Module
    batch: int = 8
    truncation: float = 1.0
    truncation_latent: torch.Tensor = None

    @classmethod
    def from_args(cls, generator, args):
        """The renderer (renderer_for) of a command line's --batch, --truncation and --truncation_mean."""
        truncation_latent = generator.truncation_latent(args.truncation, args.truncation_mean)
        return renderer_for(generator, args.batch, args.truncation, truncation_latent)

    @torch.no_grad()
    def __call__(self, latents, noises, progress=None, **options):
        """Images [N, 3, H, W] (CPU) of `latents` (z [N, latent], or w [N, latent] or per layer
        [N, n_latent, latent] with input_is_latent=True) and `noises`. `options` go to the
        generator's forward; `progress`, a tqdm bar, advances by each batch."""
        device = self.generator.device
        images = []
        for start in range(0, len(latents), self.batch):
            stop = start + self.batch
            image, _ = self.generator(
                [latents[start:stop].to(device)],
                noise=[noise[start:stop].to(device) for noise in noises],
                truncation=self.truncation,
                truncation_latent=self.truncation_latent,
                **options,
            )
            images.append(image.float().cpu())
            if progress is not None:
                progress.update(len(image))
        return torch.cat(images)

    @torch.no_grad()
    def seed_latents(self, seeds):
        """(w [N, latent], noise maps) of `seeds`: seed_inputs's z mapped to W."""
        z, noises = seed_inputs(self.generator, seeds)
        return self.generator.style(z.to(self.generator.device)).cpu(), noises

    def blend(self, start, end, t):
        """start + t (end - start) in W, for t a number or a [N] tensor (one latent each), exactly
        `start` at t = 0 and `end` at t = 1 (torch.lerp); a latent of W ([N, latent]) meets one of
        W+ ([N, n_latent, latent]) on every layer."""
        if start.ndim != end.ndim:
            start, end = (as_w_plus(w, self.generator.n_latent) for w in (start, end))
        t = torch.as_tensor(t, dtype=start.dtype)
        return torch.lerp(start, end, t.reshape(-1, *[1] * (start.ndim - 1)))

    def render_latents(self, latents, noises, progress=None, **options):
        """Images [N, 3, H, W] (CPU) of latents of W or W+ (see __call__)."""
        return self(latents, noises, progress, input_is_latent=True, **options)


class DiffusionRenderer(Renderer):
    """The Renderer of a diffusion model (diffusion.DiffusionGenerator) for walks and texture
    sticking. Its latent is the initial noise x_T [N, 3, H, W], which fixes the image under the
    deterministic sampler (DDIM, eta 0) it renders these with; the per-step noise seeds it
    carries as its one "noise map" [N, 1, 1, 1] are drawn for nothing there. Latents blend
    with their variance kept, as noise maps do (blend_noise), so that every blend is noise of the
    distribution sampling starts from and each end is exactly itself."""

    @torch.no_grad()
    def seed_latents(self, seeds):
        """(x_T [N, 3, H, W], [step seeds [N, 1, 1, 1]]) of `seeds`, as seed_inputs draws them."""
        _, (x_T, step_seeds) = seed_inputs(self.generator, seeds)
        return x_T, [step_seeds]

    def blend(self, start, end, t):
        """((1 - t) start + t end) / sqrt((1 - t)^2 + t^2), for t a number or a [N] tensor."""
        t = torch.as_tensor(t, dtype=start.dtype).reshape(-1, *[1] * (start.ndim - 1))
        return ((1 - t) * start + t * end) / ((1 - t).square() + t.square()).sqrt()

    def render_latents(self, latents, noises, progress=None, **options):
        """Deterministic DDIM samples [N, 3, H, W] (CPU) of the initial noises `latents`."""
        sampler = dataclasses.replace(self.generator.sampler, sampler="ddim", eta=0.0)
        step_seeds = torch.zeros(len(latents), 1, 1, 1, dtype=torch.int64)
        return self(torch.zeros(len(latents), 0), [latents, step_seeds], progress, sampler=sampler, **options)


def renderer_for(generator, batch=8, truncation=1.0, truncation_latent=None):
    """The Renderer of `generator`'s kind: DiffusionRenderer for a diffusion model."""
    kind = DiffusionRenderer if isinstance(generator, DiffusionGenerator) else Renderer
    return kind(generator, batch, truncation, truncation_latent)


@dataclasses.dataclass
class Inputs:
    """What a mode renders: `latents` (z [N, latent], or with `input_is_latent` w [N, latent] or
    W+ [N, n_latent, latent]), their noise maps (per layer [N, 1, h, w]), a tag per latent naming
    its files, the `shift` (h, w) in pixels they render at (a projection's), and the `seeds` they
    were drawn from (None for projections)."""

    latents: torch.Tensor
    noises: list
    tags: list
    input_is_latent: bool = False
    shift: tuple = (0, 0)
    seeds: list = None

    def shift_options(self, generator):
        """The forward options that render at `shift` (none for an unshifted input)."""
        if not any(self.shift):
            return {}
        return {"shift_h": self.shift[0], "shift_w": self.shift[1], "circular": generator.circular_shifts}

    def latent_options(self):
        """The forward option that marks latents of W or W+ (none for z, which a diffusion model,
        whose latents are all noise, also renders)."""
        return {"input_is_latent": True} if self.input_is_latent else {}


def seed_tag(seed):
    return f"seed{seed:04d}"


def inputs_of_seeds(generator, seeds):
    """Inputs of z and noise drawn per seed (seed_inputs)."""
    latents, noises = seed_inputs(generator, seeds)
    return Inputs(latents, noises, [seed_tag(seed) for seed in seeds], seeds=list(seeds))


def inputs_of_projections(generator, paths, checkpoint=None):
    """Inputs of projector.py's files (projector.load_projection, which warns of files projected
    into another `checkpoint`): their latents (W+ for all when one is W+), noise maps and shift,
    which must be the same for all; tags are the file stems."""
    projections = [load_projection(path, generator, checkpoint) for path in paths]
    shifts = {(projection["shift_h"], projection["shift_w"]) for projection in projections}
    if len(shifts) > 1:
        raise SystemExit(f"the projections were made at different shifts {sorted(shifts)}: give files of one shift")
    latents = [projection["latent"] for projection in projections]
    if len({latent.ndim for latent in latents}) > 1:
        latents = [as_w_plus(w, generator.n_latent) for w in latents]
    noises = [torch.cat(layer) for layer in zip(*(projection["noise"] for projection in projections))]
    tags = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    return Inputs(torch.cat(latents), noises, tags, input_is_latent=True, shift=shifts.pop())


def mapped(renderer, inputs):
    """`inputs` with latents in the renderer's blend space (seeds' z mapped by seed_latents)."""
    if inputs.input_is_latent:
        return inputs
    latents, noises = renderer.seed_latents(inputs.seeds)
    return Inputs(latents, noises, inputs.tags, input_is_latent=True, shift=inputs.shift, seeds=inputs.seeds)


def blend_noise(start, end, t):
    """Noise maps between `start` and `end` (lists of [1, 1, h, w]) at t in [0, 1]:
    ((1 - t) a + t b) / sqrt((1 - t)^2 + t^2), unit variance all along, each end exactly itself."""
    norm = math.sqrt((1 - t) ** 2 + t**2)
    return [((1 - t) * a + t * b) / norm for a, b in zip(start, end)]


# ---------------------------------------------------------------------------------------------
# what each mode renders


def grid_images(renderer, inputs):
    """[N, 3, H, W]: one image per latent of `inputs` (Inputs, or seeds)."""
    if not isinstance(inputs, Inputs):
        inputs = inputs_of_seeds(renderer.generator, inputs)
    with tqdm(total=len(inputs.latents), desc="grid", unit="img") as progress:
        options = inputs.shift_options(renderer.generator)
        return renderer(inputs.latents, inputs.noises, progress, **inputs.latent_options(), **options)


def shift_frames(renderer, inputs, pics, radius, plane=False, noise_shift=DEFAULT_NOISE_SHIFT):
    """`pics` frames ([N, 3, H, W] each) of every image of `inputs` (Inputs, or seeds) moved along
    a circle of `radius` pixels around its own shift; circular shifts unless `plane` (or a
    generator that cannot wrap, stylegan3-t/-r)."""
    generator = renderer.generator
    if plane:
        require_positional(generator.position, "--plane (an infinite-plane shift)")
    if not isinstance(inputs, Inputs):
        inputs = inputs_of_seeds(generator, inputs)
    frames = []
    with tqdm(total=pics * len(inputs.latents), desc="shift", unit="img") as progress:
        for frame in range(pics):
            shift_h, shift_w = circle_shift(frame, pics, radius)
            moved = move_noise(inputs.noises, shift_h, shift_w, generator.size, generator.size, noise_shift)
            circular = not plane and generator.circular_shifts
            shift_h, shift_w = shift_h + inputs.shift[0], shift_w + inputs.shift[1]
            frames.append(
                renderer(
                    inputs.latents,
                    moved,
                    progress,
                    shift_h=shift_h,
                    shift_w=shift_w,
                    circular=circular,
                    **inputs.latent_options(),
                )
            )
    return frames


def rotate_frames(renderer, seeds, pics):
    """`pics` frames of every seed's image turned about the image centre through a full turn (the
    generator's `rotation`: models with a positional input; StyleGAN3-R is the one built for it)."""
    generator = renderer.generator
    require_positional(generator.position, "--mode rotate (a rotation of the input)")
    latents, noises = seed_inputs(generator, seeds)
    frames = []
    with tqdm(total=pics * len(latents), desc="rotate", unit="img") as progress:
        for frame in range(pics):
            frames.append(renderer(latents, noises, progress, rotation=2 * math.pi * frame / pics))
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


def walk_frames(renderer, inputs, frames_per_step):
    """The frames [(K - 1) * frames_per_step + 1, 3, H, W] of a walk through the K latents of
    `inputs` in order: blended by the renderer (linear in W), noise maps by blend_noise."""
    walk = mapped(renderer, inputs)
    if len(walk.latents) < 2:
        raise SystemExit("--mode interpolate walks between latents: give 2 or more (--n_sample, --seeds, --projection)")
    latents, noises = [], []
    for step in range(len(walk.latents) - 1):
        start, end = walk.latents[step : step + 1], walk.latents[step + 1 : step + 2]
        start_noise = [noise[step : step + 1] for noise in walk.noises]
        end_noise = [noise[step + 1 : step + 2] for noise in walk.noises]
        last = step == len(walk.latents) - 2
        for frame in range(frames_per_step + last):
            t = frame / frames_per_step
            latents.append(renderer.blend(start, end, t))
            noises.append(blend_noise(start_noise, end_noise, t))
    noises = [torch.cat(layer) for layer in zip(*noises)]
    with tqdm(total=len(latents), desc="interpolate", unit="img") as progress:
        return renderer.render_latents(torch.cat(latents), noises, progress, **walk.shift_options(renderer.generator))


# ---------------------------------------------------------------------------------------------
# modes: render and save


def save_images(images, tags, folder, grid_name, suffix, args):
    """The grid and/or one PNG per tag (a seed's or a projection's), as --save asks."""
    if args.save in ("both", "grid"):
        save_grid(images, os.path.join(folder, grid_name))
    if args.save in ("both", "single"):
        for image, tag in zip(images, tags):
            to_pil(image).save(os.path.join(folder, f"{tag}{suffix}.png"))


def save_animation(frames, tags, args, folder):
    """Frames ([N, 3, H, W] each) as PNGs and a GIF per tag, and a GIF of the grid, as --save asks."""
    if args.save in ("both", "single"):
        for frame, images in enumerate(frames):
            for image, tag in zip(images, tags):
                to_pil(image).save(os.path.join(folder, f"{tag}_{frame:04d}.png"))
        for index, tag in enumerate(tags):
            sample_frames = [images[index] for images in frames]
            save_gif(sample_frames, os.path.join(folder, f"{tag}.gif"), args.duration)
    if args.save in ("both", "grid"):
        save_grid_gif(frames, os.path.join(folder, "grid.gif"), args.duration)


def mode_inputs(renderer, args):
    """The Inputs of --projection files, else of the seeds."""
    if args.projection:
        return inputs_of_projections(renderer.generator, args.projection, args.ckpt)
    return inputs_of_seeds(renderer.generator, args.seeds)


def generate_grid(renderer, args, folder):
    inputs = mode_inputs(renderer, args)
    save_images(grid_images(renderer, inputs), inputs.tags, folder, "grid.png", "", args)


def generate_shift(renderer, args, folder):
    inputs = mode_inputs(renderer, args)
    frames = shift_frames(renderer, inputs, args.pics, args.radius, args.plane, args.noise_shift)
    save_animation(frames, inputs.tags, args, folder)


def generate_rotate(renderer, args, folder):
    save_animation(rotate_frames(renderer, args.seeds, args.pics), [seed_tag(s) for s in args.seeds], args, folder)


def generate_scale(renderer, args, folder):
    tags = [seed_tag(seed) for seed in args.seeds]
    for scale, images in scale_images(renderer, args.seeds, args.scales).items():
        save_images(images, tags, folder, f"grid_x{scale:g}.png", f"_x{scale:g}", args)


def generate_canvas(renderer, args, folder):
    canvas = (args.height or renderer.generator.size, args.width or renderer.generator.size)
    size = f"{canvas[0]}x{canvas[1]}"
    images = canvas_images(renderer, args.seeds, canvas)
    save_images(images, [seed_tag(seed) for seed in args.seeds], folder, f"grid_{size}.png", f"_{size}", args)


def generate_mix(renderer, args, folder):
    table = mix_table(renderer, args.row_seeds, args.col_seeds, args.col_styles)
    save_grid(table, os.path.join(folder, "grid.png"), nrow=len(args.col_seeds) + 1)


def generate_interpolate(renderer, args, folder):
    frames = walk_frames(renderer, mode_inputs(renderer, args), args.frames_per_step)
    path = save_video(list(frames), os.path.join(folder, "walk"), args.duration)
    kind = "mp4 (imageio-ffmpeg)" if path.endswith(".mp4") else "GIF (install imageio-ffmpeg for mp4)"
    print(f"wrote {path}: {len(frames)} frames, {kind}")


def generate_sticking(renderer, args, folder):
    """Per centre (--seed, each of --seeds, or each --projection): {tag}_average.png,
    {tag}_central.png and {tag}_strip.png, and its sticking number printed."""
    if args.projection:
        centres = inputs_of_projections(renderer.generator, args.projection, args.ckpt)
    else:
        centres = mapped(renderer, inputs_of_seeds(renderer.generator, args.centre_seeds))
    options = centres.shift_options(renderer.generator)
    for index, (tag, seed) in enumerate(zip(centres.tags, args.centre_seeds)):
        centre = centres.latents[index : index + 1]
        noises = [noise[index : index + 1] for noise in centres.noises]
        with tqdm(total=args.n_sample + 1 + args.pics, desc=f"sticking {tag}", unit="img") as progress:
            pictures = sticking_pictures(
                renderer,
                centre,
                noises,
                neighbour_seeds(seed, args.n_sample),
                args.spread,
                args.pics,
                args.row,
                progress,
                **options,
            )
        for name in ("average", "central", "strip"):
            to_pil(pictures[name]).save(os.path.join(folder, f"{tag}_{name}.png"))
        print(f"{tag}: texture sticking {pictures['sticking_db']:.2f} dB ({args.n_sample} renders)")


# --mode: the function that renders and saves it
MODES = {
    "grid": generate_grid,
    "shift": generate_shift,
    "rotate": generate_rotate,
    "scale": generate_scale,
    "canvas": generate_canvas,
    "mix": generate_mix,
    "interpolate": generate_interpolate,
    "sticking": generate_sticking,
}


def build_parser():
    parser = argparse.ArgumentParser(
        description="Generate samples from the generator", formatter_class=HelpFormatter, allow_abbrev=False
    )
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--mode", type=str, default="grid", choices=list(MODES), help="what to render (see the module docstring)"
    )
    parser.add_argument(
        "--n_sample",
        "--sample",
        type=positive_int,
        default=16,
        help="number of samples (seeds) to render; sticking: renders averaged around each centre",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the first sample; sample i uses seed + i; sticking: the centre"
    )
    parser.add_argument(
        "--seeds", type=str, default=None, help="the seeds to render instead, e.g. 0-3,7 (sticking: the centres)"
    )
    parser.add_argument(
        "--projection",
        nargs="+",
        default=None,
        metavar="FILE.pt",
        help=f"render the latents of projector.py's files instead of seeds (modes {', '.join(PROJECTION_MODES)})",
    )
    parser.add_argument("--batch", type=positive_int, default=8, help="images rendered at once")
    add_truncation_arguments(parser)
    add_sampler_arguments(parser)
    parser.add_argument(
        "--save", type=str, default="both", choices=SAVE_CHOICES, help="write the grid, single images, or both"
    )
    parser.add_argument(
        "--pics",
        type=positive_int,
        default=20,
        help="shift, rotate: frames of the circle or turn; sticking: rows of the strip",
    )
    add_radius_argument(parser, "shift: ")
    add_duration_argument(parser, FRAME_MS, "shift, rotate, interpolate: ")
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
    parser.add_argument("--height", type=positive_int, help="canvas: height in pixels (default: --size)")
    parser.add_argument("--width", type=positive_int, help="canvas: width in pixels (default: --size)")
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
    parser.add_argument(
        "--frames_per_step", type=positive_int, default=16, help="interpolate: frames from one latent to the next"
    )
    add_spread_argument(parser)
    parser.add_argument(
        "--row", type=int, default=None, help="sticking: the image row the strip stacks (None: the centre row)"
    )
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    warn_unread_flags(args.mode, explicit_flags(parser, argv))
    if args.projection and args.mode not in PROJECTION_MODES:
        raise SystemExit(f"--projection works with --mode {', '.join(PROJECTION_MODES)}, not {args.mode}")
    if args.projection and args.mode != "interpolate":  # a walk names no output after them
        distinct_stems(args.projection, "projections")
    listed = parse_seeds(args.seeds) if args.seeds else None
    args.seeds = listed or list(range(args.seed, args.seed + args.n_sample))
    # sticking's centres: --seeds, or --seed; the neighbours of projection i are those of seed --seed + i
    if args.projection:
        args.centre_seeds = [args.seed + index for index in range(len(args.projection))]
    else:
        args.centre_seeds = listed or [args.seed]
    args.scales = parse_scales(args.scales)
    args.row_seeds = parse_seeds(args.row_seeds) if args.row_seeds else list(range(args.seed, args.seed + 4))
    args.col_seeds = parse_seeds(args.col_seeds) if args.col_seeds else list(range(args.seed + 4, args.seed + 8))
    generator, args, _ = load_generator_from_args(parser, args, argv, "--mode mix" if args.mode == "mix" else None)
    if args.mode == "rotate" and isinstance(generator, DiffusionGenerator):
        raise SystemExit(
            "--mode rotate turns a GAN's positional input; a diffusion model's x_T cannot turn without resampling "
            "it (as for EQ-R): use a GAN checkpoint with a positional encoding, or --mode shift"
        )
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
