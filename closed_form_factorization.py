"""Closed-form factorization of the latent space (SeFa, Shen & Zhou, CVPR 2021).

Every styled convolution of the generator (StyleGAN2's and SWAGAN's, or a layer of the
alias-free StyleGAN3-T/-R, stylegan3.py) modulates its input channels by A w + b, an affine
map A (the layer's `modulation.weight`) of the latent w. The directions n of W that change
these styles the most maximise |A n|^2 summed over the layers, i.e. they are the eigenvectors
of A^T A with A all modulation weights stacked: the right singular vectors of A (the paper's
eq. 5), strongest first.

    python closed_form_factorization.py CKPT --out factor.pt

writes {"ckpt": CKPT, "eigvec": [latent, latent]} as rosinality's script does; column i is
direction i, for `python apply_factor.py -i i -d DEGREE --ckpt CKPT factor.pt`. Only the styled
convolutions count: the ToRGB layers (rosinality's filter keeps the first one, `to_rgb1`; the
alias-free generator's is its last layer) are left out, as the paper factorizes the synthesis
layers, and so is the alias-free input's transform `affine_fourier`, which is no style.
"""

import argparse
import os
import re
import sys

import torch

from checkpoint import generator_state, load_checkpoint

# the modulation weight of the alias-free generator's layer N (stylegan3.py's `layers`)
ALIAS_FREE_MODULATION = re.compile(r"layers\.(\d+)\.modulation\.weight")


def is_styled_conv_modulation(key):
    """Whether a StyleGAN2 or SWAGAN state-dict key is the modulation weight of a styled
    convolution (`conv1.conv.modulation.weight`, `convs.N.conv.modulation.weight`), not of a ToRGB
    layer."""
    return key.endswith("conv.modulation.weight") and not key.startswith("to_rgb")


def alias_free_modulations(state_dict):
    """The modulation weights of the alias-free generator's styled layers, in order: all of
    `layers` but the last, its ToRGB layer (stylegan3.py builds layer N with to_rgb=N == num_layers)."""
    layers = {}
    for key, value in state_dict.items():
        match = ALIAS_FREE_MODULATION.fullmatch(key)
        if match:
            layers[int(match.group(1))] = value
    return [layers[index] for index in sorted(layers)[:-1]]


def modulation_weights(state_dict):
    """The modulation weights of every styled layer stacked: [sum of in-channels, latent]."""
    weights = [value for key, value in state_dict.items() if is_styled_conv_modulation(key)]
    weights = weights or alias_free_modulations(state_dict)
    if not weights:
        raise ValueError(
            "the generator has no styled layers: SeFa factorizes stylegan2, swagan and stylegan3-t/-r generators "
            "(their 'conv.modulation.weight' and 'layers.N.modulation.weight' keys)"
        )
    return torch.cat(weights, 0).float()


def factorize(state_dict):
    """SeFa directions of a generator state dict: [latent, latent], column i the i-th
    eigenvector of A^T A (orthonormal, by decreasing eigenvalue)."""
    _, _, vh = torch.linalg.svd(modulation_weights(state_dict), full_matrices=False)
    return vh.T.contiguous()


def build_parser():
    parser = argparse.ArgumentParser(
        description="Extract factor/eigenvectors of latent spaces using closed form factorization"
    )
    parser.add_argument("--out", type=str, default="factor.pt", help="name of the result factor file")
    parser.add_argument("ckpt", type=str, help="name of the model checkpoint")
    return parser


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)

    checkpoint = load_checkpoint(args.ckpt)
    try:
        eigvec = factorize(generator_state(checkpoint))
    except ValueError as error:
        raise SystemExit(f"{args.ckpt}: {error}") from None
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    torch.save({"ckpt": args.ckpt, "eigvec": eigvec}, args.out)
    print(f"wrote {args.out} ({eigvec.shape[1]} directions of a {eigvec.shape[0]}-d latent)")


if __name__ == "__main__":
    main()
