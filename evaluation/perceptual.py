"""LPIPS (Zhang et al. 2018), the perceptual distance of projector.py and ppl.py: loading it
with its VGG16 trunk, and the input size it was calibrated for.

The trunk's ImageNet weights are torchvision's vgg16, fetched by torchvision once into the torch
hub cache, or read from a local state dict file (`--lpips_weights`) on machines without network.
"""

import os
import warnings

import torch

# LPIPS was calibrated on images of at most 256 pixels; larger renders are average-pooled down
LPIPS_MAX_SIZE = 256


def load_vgg_trunk(trunk, path):
    """Load a torchvision vgg16 state dict (or of its `features`) into LPIPS's VGG trunk.

    lpips splits vgg16.features into slice1..slice5 and keeps each layer's index as its name,
    so `features.N.weight` is `sliceK.N.weight`.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise SystemExit(f"--lpips_weights {path}: cannot read it as a state dict ({error})") from None
    if not isinstance(state, dict):
        raise SystemExit(f"--lpips_weights {path} is not a state dict")
    features = {key.removeprefix("features."): value for key, value in state.items()}
    trunk_state = {}
    for slice_name, block in trunk.named_children():
        for key in block.state_dict():
            if key not in features:
                raise SystemExit(
                    f"--lpips_weights {path} is not a torchvision vgg16 state dict: it lacks features.{key}"
                )
            trunk_state[f"{slice_name}.{key}"] = features[key]
    try:
        trunk.load_state_dict(trunk_state)
    except RuntimeError as error:
        raise SystemExit(f"--lpips_weights {path} does not fit VGG16: {str(error).splitlines()[0]}") from None


def build_lpips(weights_path, device, alternative=None):
    """LPIPS (VGG trunk, the package's calibrated linear layers), frozen, in eval mode.

    The trunk's ImageNet weights come from `weights_path` when given, else torchvision fetches
    them (once, into the torch hub cache). `alternative`: a flag that avoids LPIPS, named in
    the message when the lpips package is missing or the weights cannot be fetched.
    """
    or_alternative = f", or use {alternative}" if alternative else ""
    try:
        import lpips
    except ImportError:
        raise SystemExit(
            "LPIPS needs the lpips package, which is not installed: pip install lpips (it is in requirements.txt)"
            + or_alternative
        ) from None

    with warnings.catch_warnings():
        # lpips passes torchvision the deprecated `pretrained` argument
        warnings.simplefilter("ignore", UserWarning)
        if weights_path:
            model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
            load_vgg_trunk(model.net, weights_path)
        else:
            try:
                model = lpips.LPIPS(net="vgg", pretrained=True, verbose=False)
            except (OSError, RuntimeError) as error:  # no network: URLError is an OSError
                raise SystemExit(
                    f"LPIPS needs the ImageNet weights of torchvision's VGG16, which could not be fetched "
                    f"({error}). torchvision downloads them once into "
                    f"{os.path.join(torch.hub.get_dir(), 'checkpoints')}; without a network, copy "
                    "vgg16-397923af.pth there, or pass --lpips_weights PATH (a torchvision vgg16 state "
                    "dict file)" + or_alternative
                ) from None
    return model.to(device).eval().requires_grad_(False)


def perceptual_input(image):
    """Average-pool renders larger than LPIPS_MAX_SIZE down to it (as StyleGAN2's projector)."""
    batch, channel, height, width = image.shape
    if height <= LPIPS_MAX_SIZE:
        return image
    factor = height // LPIPS_MAX_SIZE
    return image.reshape(batch, channel, height // factor, factor, width // factor, factor).mean([3, 5])
