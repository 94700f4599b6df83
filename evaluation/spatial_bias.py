"""The spatial-bias report: how much worse a generator renders away from the centre.

For every checkpoint and shift s: SWD (and FID with Inception weights) of renders shifted by s
against the real images circularly translated by the same s, the border band (below), plus each
checkpoint's EQ-T and texture sticking (evaluation/sticking.py). A spatially unbiased generator keeps
its quality at every shift.

The border band: the mean squared 3x3 Laplacian (summed over colours, at the pixels whose
neighbourhood lies inside the image) of the renders in a strip of BORDER_WIDTH such pixels
along the four borders, divided by its mean in the rest of the image. Its reference is the same
figure of the real images rolled by random offsets, the training data of --translate 1.0, whose
statistics are the same everywhere (about 1); a generator that paints noise or colour along its
borders (zero padding meeting wrapped data) scores above it. Writes report.md, report.csv,
report.png (quality against shift, one line per checkpoint, drawn with matplotlib) and
samples.png (the first sample of every checkpoint at every shift).
"""

import csv
import os
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.nn import functional as F
from tqdm import tqdm

from checkpoint import load_generator, model_label
from diffusion import use_sampler
from evaluation.common import format_value, generated_batches, module_device, open_real_images, real_image_batches
from evaluation.equivariance import translation_equivariance
from evaluation.fid import feature_statistics, frechet_distance, warn_few_fid_images
from evaluation.sticking import DEFAULT_SPREAD, texture_sticking
from evaluation.swd import SWDDescriptors, swd
from generate import renderer_for
from utils.images import make_grid, to_pil
from utils.shift import DEFAULT_NOISE_SHIFT, roll_each, translate_images

SHIFT_DIRECTIONS = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1)}
# pixels of the border strip of the border-band figure
BORDER_WIDTH = 2


def laplacian_energy(images):
    """[H - 2, W - 2]: the squared 3x3 Laplacian of [N, C, H, W] images at every pixel whose
    neighbourhood lies inside the image, summed over channels and over the N images. No padding:
    a padded border would be made up, and a circular one would measure the seam between opposite
    borders, which a generator that does not wrap around shows whatever it paints there."""
    kernel = images.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    n, channels, height, width = images.shape
    return F.conv2d(images.reshape(n * channels, 1, height, width).float(), kernel.float()).square().sum(0)[0]


def border_ratio(energy, width=BORDER_WIDTH):
    """Mean of an [H, W] energy map in the strip of `width` pixels along the four borders over
    its mean in the rest (the border band; about 1 for translated real images)."""
    strip = torch.ones_like(energy, dtype=torch.bool)
    strip[width:-width, width:-width] = False
    return (energy[strip].mean() / energy[~strip].mean()).item()


@torch.no_grad()
def quality_at_shift(
    generator,
    dataset,
    indices,
    shift,
    *,
    batch=8,
    seed=0,
    patches=128,
    directions=128,
    repeats=4,
    noise_shift=DEFAULT_NOISE_SHIFT,
    inception=None,
    real_statistics=None,
):
    """SWD (and FID with `inception`) of renders shifted by `shift` (pixels, (h, w)) against the
    real images `indices` of `dataset` circularly translated by the same amount.

    `batch` images per call; `seed` of latents, noise and patches; `patches`, `directions`,
    `repeats`: SWD's (evaluation/swd.py); `noise_shift`: what the shift does to the noise maps.
    `real_statistics`: cached (mean, cov) of the translated real images, or None to compute
    them. Returns {'swd', 'swd_levels', 'fid', 'real_statistics', 'first_sample', 'border',
    'real_border'} (the border band of the renders and of the real images randomly rolled).
    """
    device = module_device(generator)
    size = generator.size
    real_set = SWDDescriptors(size, patches, seed=seed)
    fake_set = SWDDescriptors(size, patches, seed=seed)
    need_real_features = inception is not None and real_statistics is None
    real_features, fake_features = [], []

    real_energy, fake_energy = 0.0, 0.0
    roll_rng = torch.Generator().manual_seed(seed)
    for images in real_image_batches(dataset, indices, batch):
        offsets = torch.randint(0, size, (2, len(images)), generator=roll_rng)
        real_energy = real_energy + laplacian_energy(roll_each(images, offsets[0], offsets[1]))
        images, _ = translate_images(images.to(device), shift[0], shift[1], circular=True)
        real_set.add(images)
        if need_real_features:
            real_features.append(inception(images).double().cpu())

    first_sample = None
    renders = generated_batches(
        generator, len(indices), batch, seed, shift_h=shift[0], shift_w=shift[1], noise_shift=noise_shift
    )
    for images in renders:
        fake_set.add(images)
        fake_energy = fake_energy + laplacian_energy(images)
        if inception is not None:
            fake_features.append(inception(images).double().cpu())
        if first_sample is None:
            first_sample = images[0].cpu()

    levels, mean = swd(real_set, fake_set, directions, repeats, seed)
    result = {"swd": mean, "swd_levels": levels, "fid": None, "real_statistics": real_statistics}
    if inception is not None:
        if need_real_features:
            result["real_statistics"] = feature_statistics(torch.cat(real_features).numpy())
        fake_mean, fake_cov = feature_statistics(torch.cat(fake_features).numpy())
        result["fid"] = frechet_distance(fake_mean, fake_cov, *result["real_statistics"])
    result["first_sample"] = first_sample
    result["border"], result["real_border"] = border_ratio(fake_energy), border_ratio(real_energy)
    return result


@dataclass
class SpatialBiasReport:
    """What spatial_bias_report measured: one quality row per checkpoint and shift, one
    equivariance row per checkpoint, the first sample of every checkpoint at every shift, and the
    settings it measured with (for the write-up)."""

    quality_rows: list
    equivariance_rows: list
    samples: list
    settings: dict


def spatial_bias_report(
    checkpoints,
    labels,
    real_path,
    device,
    *,
    n=1000,
    shifts=(0.0, 0.0625, 0.125, 0.25, 0.375, 0.5),
    direction="horizontal",
    batch=8,
    seed=0,
    patches=128,
    directions=128,
    repeats=4,
    noise_mode="const",
    noise_shift=DEFAULT_NOISE_SHIFT,
    eqt_n=1000,
    max_shift=0.125,
    sticking_n=32,
    spread=DEFAULT_SPREAD,
    inception=None,
    sampler=None,
):
    """Evaluate every checkpoint (named by `labels`) at `shifts` (fractions of its size, in
    `direction`) against up to `n` real images of the LMDB `real_path`: quality_at_shift, with FID
    when `inception` (a loaded Inception network) is given; then EQ-T of `eqt_n` latents (0 skips
    it) with translations up to `max_shift`; then texture sticking with `sticking_n` renders per
    centre (0 skips it) `spread` from it. Diffusion checkpoints sample with `sampler` (a
    diffusion.SamplerSettings; None: their default). Returns a SpatialBiasReport."""
    settings = {
        "real_path": real_path,
        "direction": direction,
        "seed": seed,
        "eqt_n": eqt_n,
        "max_shift": max_shift,
        "noise_mode": noise_mode,
        "noise_shift": noise_shift,
        "sticking_n": sticking_n,
        "spread": spread,
    }
    swd_settings = {"batch": batch, "seed": seed, "patches": patches, "directions": directions, "repeats": repeats}
    step_h, step_w = SHIFT_DIRECTIONS[direction]
    real_cache = {}  # (size, shift) -> real Inception statistics, shared by the checkpoints
    report = SpatialBiasReport([], [], [], settings)

    for path, label in zip(checkpoints, labels):
        generator, config = load_generator(path, device)
        use_sampler(generator, sampler)
        dataset, indices = open_real_images(real_path, generator.size, n, seed)
        if len(indices) < n:
            print(f"{real_path} holds {len(indices)} images at {generator.size} px: comparing that many, not {n}")
        if inception is not None:
            warn_few_fid_images(len(indices))
        row_samples = []
        for fraction in tqdm(shifts, desc=f"{label} shifts"):
            shift = (step_h * fraction * generator.size, step_w * fraction * generator.size)
            key = (generator.size, shift)
            result = quality_at_shift(
                generator,
                dataset,
                indices,
                shift,
                **swd_settings,
                noise_shift=noise_shift,
                inception=inception,
                real_statistics=real_cache.get(key),
            )
            if inception is not None:
                real_cache[key] = result["real_statistics"]
            row_samples.append(result["first_sample"])
            report.quality_rows.append(
                {
                    "checkpoint": label,
                    "position": model_label(config),
                    "shift_fraction": fraction,
                    "shift_px": fraction * generator.size,
                    "images": len(indices),
                    "swd": result["swd"],
                    "fid": result["fid"],
                    "border": result["border"],
                    "real_border": result["real_border"],
                }
            )
        report.samples.append(row_samples)

        equivariance = {"eqt_int": None, "eqt_frac": None}
        if eqt_n > 0:
            equivariance = translation_equivariance(
                generator,
                eqt_n,
                batch,
                max_shift,
                circular=generator.circular_shifts,
                noise_mode=noise_mode,
                noise_shift=noise_shift,
                seed=seed,
                progress=True,
            )
        sticking = {"sticking_db": None, "sticking_db_std": None}
        if sticking_n > 0:
            scores = texture_sticking(
                renderer_for(generator, batch), sticking_n, spread=spread, seed=seed, progress=True
            )
            sticking = {key: scores[key] for key in sticking}
        report.equivariance_rows.append(
            {"checkpoint": label, "position": model_label(config), **equivariance, **sticking}
        )
    return report


def write_spatial_bias_report(out, report):
    """report.md, report.csv, report.png and samples.png of a SpatialBiasReport in folder `out`."""
    os.makedirs(out, exist_ok=True)
    write_markdown(os.path.join(out, "report.md"), report.quality_rows, report.equivariance_rows, report.settings)
    write_csv(os.path.join(out, "report.csv"), report.quality_rows, report.equivariance_rows)
    draw_plot(os.path.join(out, "report.png"), report.quality_rows)
    save_samples(os.path.join(out, "samples.png"), report.samples)


def write_markdown(path, quality_rows, equivariance_rows, settings):
    """report.md: quality per shift side by side per checkpoint, then EQ-T per checkpoint."""
    labels = list(dict.fromkeys(row["checkpoint"] for row in quality_rows))
    with_fid = any(row["fid"] is not None for row in quality_rows)
    columns = ["swd", "fid"] if with_fid else ["swd"]
    names = {"swd": "SWD x1e3", "fid": "FID"}

    columns.append("border")
    names["border"] = "border band"
    lines = [
        "# Spatial-bias report",
        "",
        f"Real images: `{settings['real_path']}` ({quality_rows[0]['images']} per set, circularly translated by the "
        "same shift as the renders); "
        f"shift direction: {settings['direction']}; seed {settings['seed']}. Lower is better; a spatially unbiased "
        "generator keeps its quality at every shift.",
        "",
        "## Quality versus shift",
        "",
        "| shift (fraction of size) | " + " | ".join(f"{label} {names[c]}" for label in labels for c in columns) + " |",
        "|---" * (1 + len(labels) * len(columns)) + "|",
    ]
    for fraction in dict.fromkeys(row["shift_fraction"] for row in quality_rows):
        cells = []
        for label in labels:
            row = next(r for r in quality_rows if r["checkpoint"] == label and r["shift_fraction"] == fraction)
            cells += [format_value(row[column]) for column in columns]
        lines.append(f"| {fraction:g} | " + " | ".join(cells) + " |")

    if settings["eqt_n"] > 0:
        eqt_note = (
            f"EQ-T: PSNR (dB) between shifted renders and translated reference renders, {settings['eqt_n']} samples, "
            f"shifts up to {settings['max_shift']:g} of the size, circular (the alias-free generators, whose Fourier "
            f"input cannot wrap, shift an infinite plane and compare the region valid in both), noise "
            f"'{settings['noise_mode']}' ({settings['noise_shift']} with the shift). Higher is better."
        )
    else:
        eqt_note = "EQ-T was skipped (--eqt_n 0)."
    if settings["sticking_n"] > 0:
        sticking_note = (
            f"Texture sticking: 10 log10 of the high-frequency energy of the average of {settings['sticking_n']} "
            f"renders around a central latent (latents {settings['spread']:g} of the way to independent ones, the "
            "centre's noise maps) over the mean energy of the renders, mean ± standard deviation over the centres. "
            f"0 dB: all detail fixed to pixels; {format_value(-10 * np.log10(settings['sticking_n']))} dB: none. "
            "Lower is better."
        )
    else:
        sticking_note = "Texture sticking was skipped (--sticking_n 0)."
    lines += [
        "",
        "## Translation equivariance and texture sticking",
        "",
        eqt_note,
        "",
        sticking_note,
        "",
        "| checkpoint | position | EQ-T int (dB) | EQ-T frac (dB) | sticking (dB) | mean SWD x1e3 |",
        "|---|---|---|---|---|---|",
    ]
    for row in equivariance_rows:
        mean_swd = np.mean([r["swd"] for r in quality_rows if r["checkpoint"] == row["checkpoint"]])
        sticking = format_value(row["sticking_db"])
        if row["sticking_db"] is not None:
            sticking += f" ± {format_value(row['sticking_db_std'])}"
        lines.append(
            f"| {row['checkpoint']} | {row['position']} | {format_value(row['eqt_int'])} | "
            f"{format_value(row['eqt_frac'])} | {sticking} | {format_value(mean_swd)} |"
        )
    real_border = np.mean([row["real_border"] for row in quality_rows])
    lines += [
        "",
        f"Border band: the mean squared Laplacian of the renders in a {BORDER_WIDTH}-pixel strip along the "
        f"borders over its mean inside (real images rolled at random: {real_border:.2f}); above that, the "
        "generator paints noise or colour along its borders.",
    ]
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")


def write_csv(path, quality_rows, equivariance_rows):
    """report.csv: one row per checkpoint and shift; the EQ-T and sticking columns repeat per checkpoint."""
    equivariance = {row["checkpoint"]: row for row in equivariance_rows}
    fields = ["checkpoint", "position", "shift_fraction", "shift_px", "images", "swd", "fid"]
    fields += ["border", "real_border", "eqt_int_db", "eqt_frac_db", "sticking_db"]
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        for row in quality_rows:
            eq = equivariance[row["checkpoint"]]
            writer.writerow(
                {
                    **{key: row[key] for key in fields[:5]},
                    "swd": f"{row['swd']:.6g}",
                    "fid": "" if row["fid"] is None else f"{row['fid']:.6g}",
                    "border": f"{row['border']:.6g}",
                    "real_border": f"{row['real_border']:.6g}",
                    "eqt_int_db": "" if eq["eqt_int"] is None else f"{eq['eqt_int']:.6g}",
                    "eqt_frac_db": "" if eq["eqt_frac"] is None else f"{eq['eqt_frac']:.6g}",
                    "sticking_db": "" if eq["sticking_db"] is None else f"{eq['sticking_db']:.6g}",
                }
            )


# ---------------------------------------------------------------------------------------------
# the plot and the samples

# matplotlib's default cycle (tab10): one colour per checkpoint
LINE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def draw_plot(path, quality_rows):
    """report.png: SWD (and FID) versus shift, one coloured line per checkpoint, 560x440 px a panel."""
    metrics = [("swd", "SWD x1e3")]
    if any(row["fid"] is not None for row in quality_rows):
        metrics.append(("fid", "FID"))
    labels = list(dict.fromkeys(row["checkpoint"] for row in quality_rows))
    figure = Figure(figsize=(5.6 * len(metrics), 4.4), dpi=100)
    for axes, (key, name) in zip(figure.subplots(1, len(metrics), squeeze=False)[0], metrics):
        for index, label in enumerate(labels):
            points = [(row["shift_fraction"], row[key]) for row in quality_rows if row["checkpoint"] == label]
            points = [(x, y) for x, y in points if y is not None and np.isfinite(y)]
            axes.plot(
                *zip(*points), marker="o", linewidth=3, color=LINE_COLOURS[index % len(LINE_COLOURS)], label=label
            )
        axes.set(title=f"{name} vs shift (lower is better)", xlabel="shift (fraction of image size)", ylabel=name)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def save_samples(path, samples):
    """samples.png: the first sample of every checkpoint (rows) at every shift (columns)."""
    size = samples[0][0].shape[-1]
    images = [
        F.interpolate(image[None], size=(size, size), mode="nearest")[0] if image.shape[-1] != size else image
        for row in samples
        for image in row
    ]
    to_pil(make_grid(torch.stack(images), nrow=len(samples[0]))).save(path)
