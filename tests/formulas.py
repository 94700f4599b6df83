"""Weights from a formula, for the tests whose reference data were computed by other code from
the same weights: no random generator takes part, so the weights, and the data, are the same
with any torch."""

import math

import torch


def formula_state(template, weight_gain=2, equalized=False):
    """A state dict with the keys and shapes of `template` whose every value comes from a formula
    of its key's position and no random generator, so that it is the same with any torch.

    The entries, in sorted key order, take consecutive stretches of one integer sequence i; each
    value is sin(2 pi r / p) with r = (48271 (i^2 mod p) + 16807 i) mod p, p = 2^31 - 1, exact in
    int64 and spread like noise (a wave of i alone would make every output channel of a
    convolution one wave, shifted). Scaled as an initialisation would scale it, the activations
    stay of order 1 through all the layers: weights of two or more dimensions (convolutions,
    linear layers) by weight_gain / sqrt(fan-in), 1-D weights (batch-norm and group-norm scales)
    1 +- 0.25, biases, batch-norm shifts and running means +- 0.1, running variances 1 +- 0.5
    (positive), num_batches_tracked 0.

    The wave's mean square is 1/2, so the default weight_gain 2 gives the weights a variance of
    2 / fan-in (He's), right for a network whose convolutions each follow a ReLU (the Inception).
    Where a residual stream runs through layers with no rectifier before them (the UNet's input,
    resampling and skip convolutions), it doubles the stream's variance at each: in the UNet of
    tests/test_diffusion.py the standard deviation reached 11.5 in the decoder. A weight_gain of
    sqrt(2), a variance of 1 / fan-in, keeps it from 0.9 to 1.6 there.

    `equalized`: for layers that scale their weights by 1 / sqrt(fan-in) as they run (StyleGAN2's
    equalised learning rate, whose weights start as torch.randn): the weights are weight_gain
    times the wave, without the 1 / sqrt(fan-in), so a weight_gain of sqrt(2) gives them
    variance 1.
    """
    prime = 2**31 - 1
    state, start = {}, 0
    for key in sorted(template):
        shape = template[key].shape
        index = torch.arange(start, start + shape.numel(), dtype=torch.int64)
        start += shape.numel()
        residue = (index * index % prime * 48271 + index * 16807) % prime
        wave = torch.sin(2 * math.pi * residue.double() / prime).view(shape)
        if key.endswith("num_batches_tracked"):
            value = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            value = 1 + 0.5 * wave
        elif key.endswith(("running_mean", "bias")):
            value = 0.1 * wave
        elif len(shape) > 1:  # convolutions and linear layers
            value = wave * weight_gain if equalized else wave * weight_gain / math.sqrt(shape[1:].numel())
        else:  # normalisation scales
            value = 1 + 0.25 * wave
        state[key] = value.to(template[key].dtype)
    return state


def formula_stylegan2_state(template, lr_mlp=0.01):
    """formula_state for a StyleGAN2 generator (rosinality's and the original code's keys, ours)
    at the scales of its initialisation, with noise inputs that show: its equalised layers'
    weights of variance 1 (equalized, weight_gain sqrt(2)), the mapping network's (style.*)
    divided by `lr_mlp` as its initialisation divides them, the noise strengths (*.noise.weight,
    which it starts at 0) 0.1 +- 0.025 and the ToRGB weights a fifth of the others. The resampling
    filters (*.kernel buffers), fixed by the architecture, keep the template's values. A 16 px
    MS-PE generator of 16 channels and a latent of 32 renders images of standard deviation 0.43
    at W's mean, which other noise maps change by 0.12 and another latent by as much."""
    state = formula_state(template, weight_gain=math.sqrt(2), equalized=True)
    for key, value in state.items():
        if key.endswith("kernel"):
            value.copy_(template[key])
        elif key.startswith("style.") and key.endswith(".weight"):
            value.div_(lr_mlp)
        elif key.endswith("noise.weight"):
            value.mul_(0.1)
        elif key.startswith("to_rgb") and key.endswith("conv.weight"):
            value.mul_(0.2)
    return state
