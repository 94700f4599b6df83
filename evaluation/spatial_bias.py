"""The spatial-bias report: how much worse a generator renders away from the centre.

For every checkpoint and shift s: SWD (and FID with Inception weights) of renders shifted by s
against the real images circularly translated by the same s, plus each checkpoint's EQ-T.
A spatially unbiased generator keeps its quality at every shift. Writes report.md, report.csv,
report.png (quality against shift, one line per checkpoint, drawn with matplotlib) and
samples.png (the first sample of every checkpoint at every shift).
"""

import csv
import os

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.nn import functional as F
from tqdm import tqdm

from checkpoint import load_generator, model_label
from evaluation.equivariance import translation_equivariance
from evaluation.fid import feature_statistics, frechet_distance, warn_few_fid_images
from utils.images import make_grid, to_pil
from evaluation.inception import load_inception
from evaluation.common import checkpoint_labels, format_value, generated_batches, module_device, open_real_images, real_image_batches
from utils.shift import translate_images
from evaluation.swd import SWDDescriptors, swd

SHIFT_DIRECTIONS = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1)}


@torch.no_grad()
def quality_at_shift(generator, dataset, indices, shift, args, inception=None, real_statistics=None):
    """SWD (and FID with `inception`) of renders shifted by `shift` (pixels, (h, w)) against the
    real images circularly translated by the same amount.

    `real_statistics`: cached (mean, cov) of the translated real images, or None to compute
    them. Returns {'swd', 'swd_levels', 'fid', 'real_statistics', 'first_sample'}.
    """
    device = module_device(generator)
    size = generator.size
    real_set = SWDDescriptors(size, args.patches, seed=args.seed)
    fake_set = SWDDescriptors(size, args.patches, seed=args.seed)
    need_real_features = inception is not None and real_statistics is None
    real_features, fake_features = [], []

    for images in real_image_batches(dataset, indices, args.batch):
        images, _ = translate_images(images.to(device), shift[0], shift[1], circular=True)
        real_set.add(images)
        if need_real_features:
            real_features.append(inception(images).double().cpu())

    first_sample = None
    renders = generated_batches(
        generator, len(indices), args.batch, args.seed, shift_h=shift[0], shift_w=shift[1], noise_shift=args.noise_shift
    )
    for images in renders:
        fake_set.add(images)
        if inception is not None:
            fake_features.append(inception(images).double().cpu())
        if first_sample is None:
            first_sample = images[0].cpu()

    levels, mean = swd(real_set, fake_set, args.directions, args.repeats, args.seed)
    result = {"swd": mean, "swd_levels": levels, "fid": None, "real_statistics": real_statistics}
    if inception is not None:
        if need_real_features:
            result["real_statistics"] = feature_statistics(torch.cat(real_features).numpy())
        fake_mean, fake_cov = feature_statistics(torch.cat(fake_features).numpy())
        result["fid"] = frechet_distance(fake_mean, fake_cov, *result["real_statistics"])
    result["first_sample"] = first_sample
    return result


def spatial_bias_report(args, device):
    """Evaluate every checkpoint of args.ckpt at the shifts args.shifts (fractions of the size);
    returns (quality rows, equivariance rows, samples)."""
    inception = load_inception(args.inception, device) if args.inception else None
    direction = SHIFT_DIRECTIONS[args.direction]
    labels = checkpoint_labels(args.ckpt, args.labels)
    real_cache = {}  # (size, shift) -> real Inception statistics, shared by the checkpoints
    quality_rows, equivariance_rows, samples = [], [], []

    for path, label in zip(args.ckpt, labels):
        generator, config = load_generator(path, device)
        dataset, indices = open_real_images(args.path, generator.size, args.n, args.seed)
        if len(indices) < args.n:
            print(f"{args.path} holds {len(indices)} images at {generator.size} px: comparing that many, not {args.n}")
        if inception is not None:
            warn_few_fid_images(len(indices))
        row_samples = []
        for fraction in tqdm(args.shifts, desc=f"{label} shifts"):
            shift = (direction[0] * fraction * generator.size, direction[1] * fraction * generator.size)
            key = (generator.size, shift)
            result = quality_at_shift(generator, dataset, indices, shift, args, inception, real_cache.get(key))
            if inception is not None:
                real_cache[key] = result["real_statistics"]
            row_samples.append(result["first_sample"])
            quality_rows.append(
                {
                    "checkpoint": label,
                    "position": model_label(config),
                    "shift_fraction": fraction,
                    "shift_px": fraction * generator.size,
                    "images": len(indices),
                    "swd": result["swd"],
                    "fid": result["fid"],
                }
            )
        samples.append(row_samples)

        equivariance = {"eqt_int": None, "eqt_frac": None}
        if args.eqt_n > 0:
            equivariance = translation_equivariance(
                generator, args.eqt_n, args.batch, args.max_shift, circular=generator.circular_shifts, noise_mode=args.noise_mode,
                noise_shift=args.noise_shift, seed=args.seed, progress=True,
            )
        equivariance_rows.append({"checkpoint": label, "position": model_label(config), **equivariance})
    return quality_rows, equivariance_rows, samples


def write_report(out, quality_rows, equivariance_rows, samples, args):
    """report.md, report.csv, report.png and samples.png in folder `out`."""
    os.makedirs(out, exist_ok=True)
    write_markdown(os.path.join(out, "report.md"), quality_rows, equivariance_rows, args)
    write_csv(os.path.join(out, "report.csv"), quality_rows, equivariance_rows)
    draw_plot(os.path.join(out, "report.png"), quality_rows)
    save_samples(os.path.join(out, "samples.png"), samples)


def write_markdown(path, quality_rows, equivariance_rows, args):
    """report.md: quality per shift side by side per checkpoint, then EQ-T per checkpoint."""
    labels = list(dict.fromkeys(row["checkpoint"] for row in quality_rows))
    with_fid = any(row["fid"] is not None for row in quality_rows)
    columns = ["swd", "fid"] if with_fid else ["swd"]
    names = {"swd": "SWD x1e3", "fid": "FID"}

    lines = [
        "# Spatial-bias report",
        "",
        f"Real images: `{args.path}` ({quality_rows[0]['images']} per set, circularly translated by the same shift "
        "as the renders); "
        f"shift direction: {args.direction}; seed {args.seed}. Lower is better; a spatially unbiased generator "
        "keeps its quality at every shift.",
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

    if args.eqt_n > 0:
        eqt_note = (
            f"EQ-T: PSNR (dB) between shifted renders and translated reference renders, {args.eqt_n} samples, "
            f"shifts up to {args.max_shift:g} of the size, circular (the alias-free generators, whose Fourier input "
            f"cannot wrap, shift an infinite plane and compare the region valid in both), noise '{args.noise_mode}' "
            f"({args.noise_shift} with the shift). Higher is better."
        )
    else:
        eqt_note = "EQ-T was skipped (--eqt_n 0)."
    lines += [
        "",
        "## Translation equivariance",
        "",
        eqt_note,
        "",
        "| checkpoint | position | EQ-T int (dB) | EQ-T frac (dB) | mean SWD x1e3 |",
        "|---|---|---|---|---|",
    ]
    for row in equivariance_rows:
        mean_swd = np.mean([r["swd"] for r in quality_rows if r["checkpoint"] == row["checkpoint"]])
        lines.append(
            f"| {row['checkpoint']} | {row['position']} | {format_value(row['eqt_int'])} | "
            f"{format_value(row['eqt_frac'])} | {format_value(mean_swd)} |"
        )
    with open(path, "w") as file:
        file.write("\n".join(lines) + "\n")


def write_csv(path, quality_rows, equivariance_rows):
    """report.csv: one row per checkpoint and shift; the EQ-T columns repeat per checkpoint."""
    equivariance = {row["checkpoint"]: row for row in equivariance_rows}
    fields = ["checkpoint", "position", "shift_fraction", "shift_px", "images", "swd", "fid"]
    fields += ["eqt_int_db", "eqt_frac_db"]
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
                    "eqt_int_db": "" if eq["eqt_int"] is None else f"{eq['eqt_int']:.6g}",
                    "eqt_frac_db": "" if eq["eqt_frac"] is None else f"{eq['eqt_frac']:.6g}",
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
            axes.plot(*zip(*points), marker="o", linewidth=3, color=LINE_COLOURS[index % len(LINE_COLOURS)], label=label)
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
