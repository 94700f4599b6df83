"""What the metrics share: seeded latents and noise, renders, real-image sets, labels and output.

Every metric draws its latents, noise maps, shifts and image subsets from torch.Generators
seeded with `--seed`, on the CPU: the same seed (and --batch) gives the same figures on any device.
"""

import json
import math
import os
import time

import torch

from dataset import MultiResolutionDataset
from diffusion import DiffusionGenerator
from utils.images import to_tensor
from utils.shift import DEFAULT_NOISE_SHIFT, move_noise

# The noise maps of a render (`--noise_mode`): the generator's stored maps, fresh maps per
# batch, or none at all.
NOISE_MODES = ("const", "random", "zero")


def module_device(module):
    """The device of a module's first parameter or buffer."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def batch_sizes(total, batch):
    """Sizes of the batches that make up `total` samples."""
    return [min(batch, total - start) for start in range(0, total, batch)]


# ---------------------------------------------------------------------------------------------
# generated images


def noise_inputs(generator, batch, mode, rng):
    """Per-layer noise maps [batch, 1, h, w] of one batch, on the generator's device.

    mode: 'const' the generator's stored maps; 'random' fresh maps drawn from `rng`; 'zero'
    no noise. None for generators without noise inputs. A diffusion model's noise inputs are what
    its samples are drawn from (x_T and per-step seeds): always fresh from `rng`, whatever `mode`.
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {mode!r}")
    if isinstance(generator, DiffusionGenerator):
        return generator.make_noise(batch, rng=rng)
    if not hasattr(generator, "noise_shapes"):
        return None
    device = module_device(generator)
    if mode == "const":
        return [noise.expand(batch, -1, -1, -1) for noise in generator.stored_noise()]
    if mode == "zero":
        return [torch.zeros(batch, 1, *shape, device=device) for shape in generator.noise_shapes()]
    return [noise.to(device) for noise in generator.make_noise(batch, rng=rng)]


def render(generator, latent, noises, shift_h=0.0, shift_w=0.0, noise_shift=DEFAULT_NOISE_SHIFT, **options):
    """generator([latent], ...)[0] with the noise maps `noises` (None: the generator has none),
    moved with a shift as `noise_shift` says; `options` go to the generator's forward."""
    if noises is not None:
        size = generator.size
        options["noise"] = move_noise(noises, shift_h, shift_w, size, size, noise_shift)
    if shift_h or shift_w:
        options.update(shift_h=shift_h, shift_w=shift_w)
    return generator([latent], **options)[0]


@torch.no_grad()
def generated_batches(
    generator,
    n_sample,
    batch,
    seed=0,
    truncation=1.0,
    truncation_latent=None,
    shift_h=0.0,
    shift_w=0.0,
    noise_shift=DEFAULT_NOISE_SHIFT,
):
    """Yield [B, 3, S, S] renders of seeded latents with seeded random noise maps.

    The same seed gives the same latents and noise whatever the shift, so renders at different
    shifts show the same samples. One generator draws them batch after batch, latents then noise,
    so another `batch` draws other samples (of the same distribution): compare figures made with
    the same --seed and --batch. Shifts wrap around where the generator's do
    (`generator.circular_shifts`) and move an infinite plane otherwise.
    """
    device = module_device(generator)
    rng = torch.Generator().manual_seed(seed)
    for count in batch_sizes(n_sample, batch):
        latent = torch.randn(count, generator.style_dim, generator=rng).to(device)
        noises = noise_inputs(generator, count, "random", rng)
        yield render(
            generator,
            latent,
            noises,
            shift_h,
            shift_w,
            noise_shift,
            truncation=truncation,
            truncation_latent=truncation_latent,
            circular=generator.circular_shifts,
        )


# ---------------------------------------------------------------------------------------------
# real images


def real_image_batches(dataset, indices, batch):
    """Yield [B, 3, H, W] float batches in [-1, 1] of the dataset items `indices`."""
    for start in range(0, len(indices), batch):
        yield torch.stack([dataset[index] for index in indices[start : start + batch]])


def open_real_images(path, resolution, n_sample, seed=0):
    """(dataset of tensors in [-1, 1], indices): up to `n_sample` images, a seeded random subset."""
    dataset = MultiResolutionDataset(path, to_tensor, resolution)
    if n_sample >= len(dataset):
        return dataset, list(range(len(dataset)))
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return dataset, sorted(order[:n_sample].tolist())


# ---------------------------------------------------------------------------------------------
# labels and output


def checkpoint_labels(paths, labels=None):
    """Names for the checkpoints: `labels` (comma-separated), else '<folder>/<file stem>'."""
    if labels:
        names = [label.strip() for label in labels.split(",")]
        if len(names) != len(paths):
            raise SystemExit(f"--labels names {len(names)} checkpoints, --ckpt gives {len(paths)}")
    else:
        names = []
        for path in paths:
            folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
            stem = os.path.splitext(os.path.basename(path))[0]
            names.append(f"{folder}/{stem}" if folder else stem)
    if len(set(names)) != len(names):
        raise SystemExit(f"checkpoint labels {names} are not unique; name them with --labels A,B,...")
    return names


def format_value(value, digits=2):
    """A figure for tables and messages: '-' for None, 'inf' for an infinite PSNR."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def results_folder(checkpoint_path):
    """metrics/<the checkpoint's folder>: where a metric's results go by default."""
    return os.path.join("metrics", os.path.basename(os.path.dirname(os.path.abspath(checkpoint_path))))


def write_json(path, command, args, results):
    """{command, settings (the command line), results, time} as JSON at `path` (say fid.json,
    the latest run's), and as one more line of the history beside it (fid.jsonl), so that a run
    of other settings or checkpoints in the same folder does not lose the figures before it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key not in ("command", "handler")}
    record = {"command": command, "settings": settings, "results": results, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    history = os.path.splitext(path)[0] + ".jsonl"
    earlier = []
    if os.path.isfile(path) and not os.path.isfile(history):  # written before there was a history: its first line
        with open(path) as file:
            earlier = [json.load(file)]
    with open(history, "a") as file:
        for line in [*earlier, record]:
            file.write(json.dumps(line) + "\n")
    with open(path, "w") as file:
        json.dump(record, file, indent=2)
    print(f"wrote {path} (every run: {history})")
