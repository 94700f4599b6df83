"""Move samples along a SeFa direction (closed_form_factorization.py), as rosinality's script.

    python apply_factor.py -i INDEX -d DEGREE --ckpt CKPT factor.pt

renders -n samples with w + DEGREE * direction, w and w - DEGREE * direction (rows, top to
bottom) and writes {--out_prefix}_index-{INDEX}_degree-{DEGREE}.png. Model flags come from the
checkpoint. Unlike the original, sample i uses seed --seed + i, and the three renders of a
sample share its noise maps, so only the direction changes the image.

Beyond the original: --pics N also writes a GIF of N frames sweeping the degree from -DEGREE to
+DEGREE; --shift_h/--shift_w render everything shifted (the noise maps move with the content,
--noise_shift), so an edit can be seen to move with the content of a PE model.
--projection A.pt --projection B.pt (the flag once per file: the factor file, positional,
follows) edits the latents projector.py found for images instead of seeds' (with their noise
maps, at their shift).
"""

import argparse
import os
import sys

import torch
from tqdm import tqdm

from checkpoint import add_checkpoint_arguments, load_generator_from_args, warn_other_checkpoint
from generate import Renderer, inputs_of_projections, inputs_of_seeds, mapped
from utils.flags import add_duration_argument, add_noise_shift_argument, add_truncation_arguments, positive_int
from utils.images import make_grid, save_gif, save_grid
from utils.shift import DEFAULT_NOISE_SHIFT, move_noise


def load_directions(path, latent_dim, checkpoint=None):
    """The eigenvector matrix [latent, latent] of a factor file (columns are directions); a file
    factorized from another checkpoint than `checkpoint` (the generator's file) is a warning."""
    if not os.path.isfile(path):
        raise SystemExit(
            f"factor file {path!r} not found; make it with: python closed_form_factorization.py CKPT --out {path}"
        )
    try:
        factor = torch.load(path, map_location="cpu", weights_only=True)
        eigvec = factor["eigvec"]
    except Exception as error:
        raise SystemExit(f"{path} is not a factor file of closed_form_factorization.py ({error})") from None
    if eigvec.ndim != 2 or eigvec.shape[0] != latent_dim:
        raise SystemExit(
            f"{path} holds directions of a {eigvec.shape[0]}-d latent, the generator's latent has {latent_dim}: "
            "factorize this checkpoint"
        )
    warn_other_checkpoint(path, factor.get("ckpt"), checkpoint, "directions")
    return eigvec.float()


def moved_renders(
    renderer,
    w,
    noises,
    direction,
    degrees,
    shift_h=0,
    shift_w=0,
    noise_shift=DEFAULT_NOISE_SHIFT,
    progress=None,
    at=(0, 0),
):
    """For each degree t, the renders [N, 3, H, W] of w + t * direction (w of W or W+), shifted
    by (shift_h, shift_w) from where they render (`at`, a projection's shift) with the noise
    maps moved as `noise_shift` says."""
    generator = renderer.generator
    noises = move_noise(noises, shift_h, shift_w, generator.size, generator.size, noise_shift)
    shift = {"shift_h": at[0] + shift_h, "shift_w": at[1] + shift_w, "circular": generator.circular_shifts}
    return [renderer(w + degree * direction, noises, progress, input_is_latent=True, **shift) for degree in degrees]


def build_parser():
    parser = argparse.ArgumentParser(description="Apply closed form factorization", allow_abbrev=False)
    add_checkpoint_arguments(parser)
    parser.add_argument("-i", "--index", type=int, default=0, help="index of eigenvector")
    parser.add_argument(
        "-d", "--degree", type=float, default=5, help="scalar factors for moving latent vectors along eigenvector"
    )
    parser.add_argument("-n", "--n_sample", type=positive_int, default=7, help="number of samples created")
    add_truncation_arguments(
        parser,
        default=None,
        help="truncation ratio (1 = none; below 1 towards the mean, above 1 away from it; default 0.7, and 1 for "
        "--projection: its latent as found)",
    )
    parser.add_argument("--out_prefix", type=str, default="factor", help="filename prefix to result samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed + i")
    parser.add_argument("--batch", type=positive_int, default=8, help="images rendered at once")
    parser.add_argument("--pics", type=int, default=0, help="also write a GIF of this many frames from -d to +d")
    add_duration_argument(parser, 80)
    parser.add_argument("--shift_h", type=float, default=0, help="render shifted down by this many pixels")
    parser.add_argument("--shift_w", type=float, default=0, help="render shifted right by this many pixels")
    add_noise_shift_argument(parser)
    parser.add_argument(
        "--projection",
        action="append",
        default=None,
        metavar="FILE.pt",
        help="edit the latent of projector.py's file instead of -n seeds (repeat the flag for several)",
    )
    parser.add_argument("factor", type=str, help="name of the closed form factorization result factor file")
    return parser


@torch.no_grad()
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pics < 0 or args.pics == 1:
        raise SystemExit(f"--pics is 0 (no GIF) or at least 2, not {args.pics}")
    if args.truncation is None:
        args.truncation = 1.0 if args.projection else 0.7
    generator, args, _ = load_generator_from_args(parser, args, argv, gan_only="SeFa (directions in W)")
    eigvec = load_directions(args.factor, generator.style_dim, args.ckpt)
    if not 0 <= args.index < eigvec.shape[1]:
        raise SystemExit(f"-i/--index must be 0..{eigvec.shape[1] - 1}, not {args.index}")
    direction = eigvec[:, args.index].unsqueeze(0)  # on the CPU, as the latents: the renderer moves them

    renderer = Renderer.from_args(generator, args)
    if args.projection:
        inputs = inputs_of_projections(generator, args.projection, args.ckpt)
        args.n_sample = len(inputs.latents)
    else:
        inputs = mapped(renderer, inputs_of_seeds(generator, range(args.seed, args.seed + args.n_sample)))
    w, noises, at = inputs.latents, inputs.noises, inputs.shift
    sweep = [args.degree * (2 * frame / (args.pics - 1) - 1) for frame in range(args.pics)]
    stem = f"{args.out_prefix}_index-{args.index}_degree-{args.degree}"
    shift = (args.shift_h, args.shift_w, args.noise_shift)
    try:
        with tqdm(total=(3 + len(sweep)) * args.n_sample, desc="factor", unit="img") as progress:
            degrees = [args.degree, 0, -args.degree]
            rows = moved_renders(renderer, w, noises, direction, degrees, *shift, progress, at)
            save_grid(torch.cat(rows), f"{stem}.png", nrow=args.n_sample)
            if sweep:
                frames = moved_renders(renderer, w, noises, direction, sweep, *shift, progress, at)
                save_gif([make_grid(frame, nrow=args.n_sample) for frame in frames], f"{stem}.gif", args.duration)
    except ValueError as error:  # e.g. a fractional shift of a canvas the generator cannot render
        raise SystemExit(str(error)) from None
    print(f"wrote {stem}.png" + (f" and {stem}.gif" if sweep else ""))


if __name__ == "__main__":
    main()
