"""Weights from a formula, for the tests whose reference data were computed by other code from
the same weights: no random generator takes part, so the weights, and the data, are the same
with any torch."""

import math

import torch


def formula_state(template):
    """A state dict with the keys and shapes of `template` whose every value comes from a formula
    of its key's position and no random generator, so that it is the same with any torch.

    The entries, in sorted key order, take consecutive stretches of one integer sequence i; each
    value is sin(2 pi r / p) with r = (48271 (i^2 mod p) + 16807 i) mod p, p = 2^31 - 1, exact in
    int64 and spread like noise (a wave of i alone would make every output channel of a
    convolution one wave, shifted). Scaled as an initialisation would scale it, the activations
    stay of order 1 through all the layers: weights of two or more dimensions (convolutions,
    linear layers) by 2 / sqrt(fan-in), 1-D weights (batch-norm and group-norm scales) 1 +- 0.25,
    biases, batch-norm shifts and running means +- 0.1, running variances 1 +- 0.5 (positive),
    num_batches_tracked 0.
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
            value = wave * 2 / math.sqrt(shape[1:].numel())
        else:  # normalisation scales
            value = 1 + 0.25 * wave
        state[key] = value.to(template[key].dtype)
    return state
