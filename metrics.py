"""Metrics of spatial bias: equivariance (EQ-T, EQ-R), texture sticking, FID, SWD and the spatial-bias report.

One command line for all of them (`python metrics.py COMMAND --help` for the options):

    python metrics.py eqt --ckpt CKPT [CKPT ...]              EQ-T, integer and fractional (dB)
    python metrics.py eqr --ckpt CKPT [CKPT ...]              EQ-R (dB), positional models only
    python metrics.py sticking --ckpt CKPT [CKPT ...]         texture sticking (dB), higher is more
    python metrics.py swd --ckpt CKPT --path LMDB              sliced Wasserstein distance (x 1e3)
    python metrics.py fid --ckpt CKPT [--inception WEIGHTS] (--path LMDB | --real_stats FILE)
    python metrics.py inception [--inception WEIGHTS] --path LMDB --size SIZE   cache real statistics
    python metrics.py ppl --ckpt CKPT [--space w --sampling end]  perceptual path length
    python metrics.py report --ckpt A.pt B.pt --path LMDB [--inception WEIGHTS]

Diffusion checkpoints (train.py --arch ddpm) are measured beside the GANs, sampled as --sampler,
--steps and --eta say (EQ-T always uses deterministic DDIM, eta 0; see evaluation/equivariance.py).

Texture sticking: around each of --centres central latents, --n renders of latents --spread
of the way (in W) to independent ones, all with the centre's noise maps; with E the energy of
an image's spectrum above --cutoff times the Nyquist frequency (Hann-windowed), the number is
10 log10(E(average of the renders) / mean of E(render)) in dB, mean and standard deviation over
the centres. 0 dB: every render carries the same detail at the same pixels (complete sticking);
about -10 log10(n) dB: the detail moves or changes with the latent. --noise own or zero takes
the noise maps' own pixel-fixed detail out. evaluation/sticking.py.

Each metric lives in its own module of evaluation/ (equivariance.py, sticking.py, swd.py, fid.py
with inception.py, ppl.py, spatial_bias.py) with the helpers they share in common.py; this file
is their command line.
Checkpoints carry their model configuration. Results go to metrics/<name>/ (or --out): <metric>.json
holds the latest run of a metric, <metric>.jsonl a line per run.
"""

import argparse
import math
import os
import sys

from tqdm import tqdm

from checkpoint import (
    checkpoint_arch,
    load_checkpoint,
    load_generator,
    model_label,
    refuse_diffusion,
    resolve_checkpoint,
)
from diffusion import DiffusionGenerator, SamplerSettings, apply_sampler_args
from evaluation.common import (
    NOISE_MODES,
    batch_sizes,
    checkpoint_labels,
    format_value,
    generated_batches,
    open_real_images,
    real_image_batches,
    results_folder,
    write_json,
)
from evaluation.equivariance import check_max_shift, rotation_equivariance, translation_equivariance
from evaluation.fid import cached_real_statistics, generator_fid, real_statistics, save_statistics
from evaluation.perceptual import build_lpips
from evaluation.ppl import perceptual_path_length
from evaluation.spatial_bias import SHIFT_DIRECTIONS, spatial_bias_report, write_spatial_bias_report
from evaluation.sticking import DEFAULT_CENTRES, DEFAULT_CUTOFF, STICKING_NOISE, check_neighbours, texture_sticking
from evaluation.swd import SWDDescriptors, swd, swd_resolutions
from generate import Renderer
from ppl import add_ppl_arguments
from utils.device import choose_device
from utils.flags import (
    add_device_argument,
    add_inception_weights_argument,
    add_noise_shift_argument,
    add_sampler_arguments,
    add_spread_argument,
    add_truncation_arguments,
    positive_int,
)


def output_folder(args, default_name=None):
    """--out, else metrics/<--name>, else metrics/<default_name or the first checkpoint's folder>."""
    if args.out:
        return args.out
    if args.name or default_name:
        return os.path.join("metrics", args.name or default_name)
    return results_folder(args.ckpt[0])


def generators(args, device):
    """(path, label, generator, configuration) of every --ckpt, loaded one at a time."""
    for path, label in zip(args.ckpt, checkpoint_labels(args.ckpt, args.labels)):
        generator, config = load_generator(path, device)
        yield path, label, apply_sampler_args(generator, args), config


def run_eqt(args, device):
    results = []
    for path, label, generator, config in generators(args, device):
        try:
            scores = translation_equivariance(
                generator,
                args.n,
                args.batch,
                args.max_shift,
                args.circular,
                args.noise_mode,
                args.noise_shift,
                args.seed,
                progress=True,
            )
        except ValueError as error:
            raise SystemExit(f"{path}: {error}") from None
        # the variant, since only plane shifts compare as StyleGAN3 compares
        shifts = "circular shifts" if args.circular else "plane shifts, compared as StyleGAN3"
        if isinstance(generator, DiffusionGenerator):  # its noise is x_T, which moves; the sampler is fixed
            inputs = f"deterministic DDIM of {generator.sampler.steps} steps from x_T"
        else:
            inputs = f"noise maps {args.noise_shift}"
        print(
            f"{label} ({model_label(config)}): EQ-T int {format_value(scores['eqt_int'])} dB, "
            f"EQ-T frac {format_value(scores['eqt_frac'])} dB ({shifts}, {inputs})"
        )
        results.append({"checkpoint": path, "position": model_label(config), **scores})
    write_json(os.path.join(output_folder(args), "eqt.json"), "eqt", args, results)


def run_eqr(args, device):
    results = []
    for path, label, generator, config in generators(args, device):
        try:
            score = rotation_equivariance(
                generator, args.n, args.batch, args.max_rotation, args.noise_mode, args.seed, progress=True
            )
        except ValueError as error:
            raise SystemExit(f"{path}: {error}") from None
        print(f"{label} ({model_label(config)}): EQ-R {format_value(score)} dB")
        results.append({"checkpoint": path, "position": model_label(config), "eqr": score})
    write_json(os.path.join(output_folder(args), "eqr.json"), "eqr", args, results)


def run_sticking(args, device):
    results = []
    for path, label, generator, config in generators(args, device):
        renderer = Renderer.from_args(generator, args)
        try:
            scores = texture_sticking(
                renderer, args.n, args.centres, args.spread, args.cutoff, args.seed, progress=True, noise=args.noise
            )
        except ValueError as error:
            raise SystemExit(f"{path}: {error}") from None
        print(
            f"{label} ({model_label(config)}): texture sticking {format_value(scores['sticking_db'])} ± "
            f"{format_value(scores['sticking_db_std'])} dB over {args.centres} centres (0 dB: all detail fixed to "
            f"pixels; {format_value(scores['floor_db'])} dB: none)"
        )
        results.append({"checkpoint": path, "position": model_label(config), **scores})
    write_json(os.path.join(output_folder(args), "sticking.json"), "sticking", args, results)


def run_swd(args, device):
    results = []
    for path, label, generator, config in generators(args, device):
        dataset, indices = open_real_images(args.path, generator.size, args.n, args.seed)
        real_set = SWDDescriptors(generator.size, args.patches, seed=args.seed)
        fake_set = SWDDescriptors(generator.size, args.patches, seed=args.seed)
        total = len(batch_sizes(len(indices), args.batch))
        for images in tqdm(real_image_batches(dataset, indices, args.batch), total=total, desc="real"):
            real_set.add(images.to(device))
        truncation_latent = generator.truncation_latent(args.truncation, args.truncation_mean)
        fakes = generated_batches(generator, len(indices), args.batch, args.seed, args.truncation, truncation_latent)
        for images in tqdm(fakes, total=total, desc="generated"):
            fake_set.add(images)
        levels, mean = swd(real_set, fake_set, args.directions, args.repeats, args.seed)
        resolutions = swd_resolutions(generator.size)
        print(
            f"{label} ({model_label(config)}): SWD x1e3 {mean:.3f} ("
            + ", ".join(f"{r}px {v:.3f}" for r, v in zip(resolutions, levels))
            + f"; {len(indices)} images)"
        )
        results.append(
            {
                "checkpoint": path,
                "position": model_label(config),
                "swd": mean,
                "swd_levels": dict(zip(resolutions, levels)),
            }
        )
    write_json(os.path.join(output_folder(args), "swd.json"), "swd", args, results)


def inception_network(path, device):
    """The FID Inception (evaluation/inception.py), imported here: it imports torchvision, whose
    seconds the other metrics need not pay."""
    from evaluation.inception import load_inception

    return load_inception(path, device)


def run_inception(args, device):
    real_images = open_real_images(args.path, args.size, args.n, args.seed)
    inception = inception_network(args.inception, device)
    mean, cov, info = real_statistics(inception, real_images, args.batch, args.seed)
    lmdb_name = os.path.basename(os.path.normpath(args.path))
    out = args.real_stats or os.path.join("metrics", f"inception_{lmdb_name}_{args.size}.npz")
    save_statistics(out, mean, cov, **info)
    print(f"wrote {out} (Inception statistics of {info['n_sample']} real images at {args.size} px)")


def run_fid(args, device):
    if not args.real_stats and not args.path:
        raise SystemExit(
            "fid compares with real images: give --path LMDB or --real_stats FILE (from `metrics.py inception`)"
        )
    inception = inception_network(args.inception, device)
    results = []
    for path, label, generator, config in generators(args, device):
        if args.real_stats:
            real_mean, real_cov, real_weights = cached_real_statistics(args.real_stats, generator.size, path)
        else:
            real_images = open_real_images(args.path, generator.size, args.n, args.seed)
            real_mean, real_cov, _ = real_statistics(inception, real_images, args.batch, args.seed)
            real_weights = None
        score = generator_fid(
            generator,
            inception,
            real_mean,
            real_cov,
            args.n,
            args.batch,
            args.seed,
            args.truncation,
            args.truncation_mean,
            real_weights=real_weights,
        )
        print(f"{label} ({model_label(config)}): FID {score:.3f} ({args.n} generated images)")
        results.append({"checkpoint": path, "position": model_label(config), "fid": score})
    write_json(os.path.join(output_folder(args), "fid.json"), "fid", args, results)


def run_ppl(args, device):
    for path in args.ckpt:  # every one before any work, and before the LPIPS download
        refuse_diffusion(path, checkpoint_arch(load_checkpoint(path)), "PPL")
    percept = build_lpips(args.lpips_weights, device)
    results = []
    for path, label, generator, config in generators(args, device):
        score = perceptual_path_length(
            generator,
            percept,
            args.n,
            args.batch,
            args.space,
            args.eps,
            args.crop,
            args.sampling,
            args.seed,
            progress=True,
        )
        print(f"{label} ({model_label(config)}): PPL {score:.3f} ({args.space}, {args.sampling}, {args.n} samples)")
        results.append({"checkpoint": path, "position": model_label(config), "space": args.space, "ppl": score})
    write_json(os.path.join(output_folder(args), "ppl.json"), "ppl", args, results)


def run_report(args, device):
    report = spatial_bias_report(
        args.ckpt,
        checkpoint_labels(args.ckpt, args.labels),
        args.path,
        device,
        n=args.n,
        shifts=args.shifts,
        direction=args.direction,
        batch=args.batch,
        seed=args.seed,
        patches=args.patches,
        directions=args.directions,
        repeats=args.repeats,
        noise_mode=args.noise_mode,
        noise_shift=args.noise_shift,
        eqt_n=args.eqt_n,
        max_shift=args.max_shift,
        sticking_n=args.sticking_n,
        spread=args.spread,
        inception=inception_network(args.inception, device) if args.inception else None,
        sampler=SamplerSettings.from_args(args),
    )
    out = output_folder(args, default_name="report")
    write_spatial_bias_report(out, report)
    with open(os.path.join(out, "report.md")) as file:
        print(file.read())
    print(f"wrote {out}/report.md, report.csv, report.png, samples.png")


def fractions(text):
    """'0,0.125,0.25' -> [0.0, 0.125, 0.25] (argparse type of --shifts)."""
    try:
        values = [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"takes comma-separated numbers such as 0,0.125,0.25, not {text!r}")
    return values


def nyquist_cutoff(text):
    """--cutoff: a radial frequency in units of the Nyquist frequency, inside the spectrum (the
    corners reach sqrt 2): above it no energy would be left to measure."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number, not {text!r}") from None
    if not 0 <= value < math.sqrt(2):
        raise argparse.ArgumentTypeError(
            f"must be from 0 to below sqrt(2) = 1.414 (the spectrum's corners), not {value}"
        )
    return value


def sticking_renders(text):
    """--sticking_n: 0 (skip texture sticking), or the renders an average needs (check_neighbours)."""
    try:
        value = int(text)
        if value != 0:
            check_neighbours(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"is 0 (skip it) or at least 2 renders, not {text!r}") from None
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    add_device_argument(common)
    common.add_argument("--batch", type=positive_int, default=8, help="images per generator call")
    common.add_argument("--seed", type=int, default=0, help="seed of latents, noise, shifts and patches")

    models = argparse.ArgumentParser(add_help=False, parents=[common])
    models.add_argument(
        "--ckpt",
        nargs="+",
        required=True,
        help="checkpoints; a bare name like 550000.pt means checkpoint/<name>/550000.pt, 'latest' the newest there",
    )
    models.add_argument("--name", default=None, help="experiment name: where bare --ckpt names and outputs live")
    models.add_argument("--out", default=None, help="output folder (default metrics/<name>)")
    models.add_argument("--labels", default=None, help="comma-separated names of the checkpoints in outputs")
    add_sampler_arguments(models)

    noise = argparse.ArgumentParser(add_help=False)
    noise.add_argument(
        "--noise_mode",
        choices=NOISE_MODES,
        default="const",
        help="the noise maps of both renders of a pair: the model's stored maps (const), "
        "fresh maps per batch (random), or none (zero)",
    )

    shifting = argparse.ArgumentParser(add_help=False)
    add_noise_shift_argument(shifting)

    real = argparse.ArgumentParser(add_help=False)
    real.add_argument("--path", default=None, help="LMDB of real images (prepare_data.py)")

    truncation = argparse.ArgumentParser(add_help=False)
    add_truncation_arguments(truncation)

    sliced = argparse.ArgumentParser(add_help=False)
    sliced.add_argument("--patches", type=positive_int, default=128, help="7x7 patches per image and pyramid level")
    sliced.add_argument("--directions", type=positive_int, default=128, help="random projections per repeat")
    sliced.add_argument("--repeats", type=positive_int, default=4, help="repeats of the random projections")

    eqt = commands.add_parser("eqt", parents=[models, noise, shifting], help="translation equivariance, EQ-T (dB)")
    eqt.add_argument("--n", type=positive_int, default=1000, help="number of latents")
    eqt.add_argument("--max_shift", type=float, default=0.125, help="largest translation, fraction of the size")
    eqt.add_argument(
        "--no_circular",
        dest="circular",
        action="store_false",
        help="shift an infinite plane (positional models) and compare over the region valid in both",
    )
    eqt.set_defaults(handler=run_eqt)

    eqr = commands.add_parser("eqr", parents=[models, noise], help="rotation equivariance, EQ-R (dB)")
    eqr.add_argument("--n", type=positive_int, default=1000, help="number of latents")
    eqr.add_argument("--max_rotation", type=float, default=180.0, help="largest rotation in degrees")
    eqr.set_defaults(handler=run_eqr)

    sticking = commands.add_parser(
        "sticking", parents=[models, truncation], help="texture sticking (dB; higher is more sticking)"
    )
    sticking.add_argument("--n", type=positive_int, default=64, help="renders averaged around each centre")
    sticking.add_argument(
        "--centres", type=int, default=DEFAULT_CENTRES, help="central latents (seeds --seed, --seed + 1, ...)"
    )
    add_spread_argument(sticking)
    sticking.add_argument(
        "--cutoff", type=nyquist_cutoff, default=DEFAULT_CUTOFF, help="high frequencies: above this fraction of Nyquist"
    )
    sticking.add_argument(
        "--noise",
        choices=STICKING_NOISE,
        default=STICKING_NOISE[0],
        help="noise maps of the renders: the centre's for all, each its own seed's, or none",
    )
    sticking.set_defaults(handler=run_sticking)

    swd_parser = commands.add_parser(
        "swd", parents=[models, real, truncation, sliced], help="sliced Wasserstein distance (x 1e3)"
    )
    swd_parser.add_argument("--n", type=positive_int, default=1000, help="images per set")
    swd_parser.set_defaults(handler=run_swd)

    fid = commands.add_parser("fid", parents=[models, real, truncation], help="Fréchet Inception distance")
    fid.add_argument("--n", type=positive_int, default=50000, help="generated (and real, with --path) images")
    add_inception_weights_argument(fid)
    fid.add_argument(
        "--real_stats",
        default=None,
        help="cached real statistics: .npz from `metrics.py inception`, or calc_inception.py's .pkl",
    )
    fid.set_defaults(handler=run_fid)

    cache = commands.add_parser("inception", parents=[common, real], help="cache Inception statistics of real images")
    add_inception_weights_argument(cache)
    cache.add_argument("--size", type=int, required=True, help="resolution of the real images")
    cache.add_argument("--n", type=positive_int, default=50000, help="real images (all when the LMDB holds fewer)")
    cache.add_argument("--real_stats", default=None, help="output file (default metrics/inception_<lmdb>_<size>.npz)")
    cache.set_defaults(handler=run_inception)

    ppl = commands.add_parser("ppl", parents=[models], help="perceptual path length (LPIPS / eps^2)")
    ppl.add_argument("--n", "--n_sample", dest="n", type=positive_int, default=5000, help="latent pairs")
    add_ppl_arguments(ppl)
    ppl.set_defaults(handler=run_ppl)

    report = commands.add_parser(
        "report", parents=[models, real, noise, shifting, sliced], help="quality versus shift and EQ-T of checkpoints"
    )
    report.add_argument("--n", type=positive_int, default=1000, help="images per set and shift")
    report.add_argument(
        "--shifts",
        type=fractions,
        default="0,0.0625,0.125,0.25,0.375,0.5",
        help="shifts as fractions of the image size",
    )
    report.add_argument("--direction", choices=list(SHIFT_DIRECTIONS), default="horizontal", help="shift direction")
    add_inception_weights_argument(report, help="Inception-v3 state dict file (pytorch-fid or torchvision): adds FID")
    report.add_argument("--eqt_n", type=int, default=1000, help="latents for EQ-T (0 skips it)")
    report.add_argument("--max_shift", type=float, default=0.125, help="largest EQ-T translation, fraction of the size")
    report.add_argument(
        "--sticking_n",
        type=sticking_renders,
        default=32,
        help="texture sticking: renders averaged per centre (0 skips it)",
    )
    add_spread_argument(report)
    report.set_defaults(handler=run_report)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command in ("inception", "swd", "report") and not args.path:
        raise SystemExit(f"{args.command} compares with real images: give --path LMDB")
    if hasattr(args, "ckpt"):
        args.ckpt = [resolve_checkpoint(ckpt, args.name) for ckpt in args.ckpt]
    device = choose_device(args.device)
    try:
        if hasattr(args, "max_shift"):  # before any work: report measures EQ-T last
            check_max_shift(args.max_shift)
        args.handler(args, device)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
