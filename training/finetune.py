"""Fine-tuning from weights-only checkpoints (convert_weight.py's, rosinality's): what train.py
does with a `--ckpt` that has no optimiser states.

- The run starts at iteration 0 with fresh optimisers (training/loop.py's resume_point).
- `g`, `g_ema` and `d` each start from the checkpoint's own entry. A checkpoint with only one
  generator gives it to both `g` and `g_ema` (a network pickle's G_ema is the generator users
  render with, and training continues from it); one without `d` trains a fresh discriminator.
- A different `--position` (a StyleGAN2 `none` model warm-starting `sspe` or `mspe`) loads every
  tensor both generators have; the positional parts (`pes.N.gamma`) start as from scratch, and
  the learned constant `input.input`, which PE models do not have, is dropped. The log lists
  what was loaded, what is new and what was dropped. A tensor of another shape (another size or
  channel count) is refused with both shapes.
- `--freeze_d N` (Freeze-D, Mo et al. 2020): `freeze_discriminator` keeps the discriminator's
  first N blocks fixed.
"""

import sys

from checkpoint import describe_model, load_model_state, model_config
from model import Discriminator
from training import distributed
from training.distributed import unwrap


def discriminator_blocks(discriminator):
    """The blocks Freeze-D counts, from the image: block 1 is the fromRGB layer with the residual
    block at full resolution, block k the residual block at size / 2^(k-1). The 4x4 epilogue
    (minibatch stddev, conv, linear layers) is not a block: it always trains."""
    layers = list(discriminator.convs)
    return [[layers[0], layers[1]]] + [[layer] for layer in layers[2:]]


def freeze_discriminator(discriminator, blocks):
    """Freeze-D: mark the parameters of the first `blocks` blocks (discriminator_blocks) frozen,
    so that training/gan.py's requires_grad never lets them train. Returns their names."""
    if not isinstance(discriminator, Discriminator):
        raise SystemExit(f"--freeze_d needs StyleGAN2's residual discriminator, not {type(discriminator).__module__}'s")
    available = discriminator_blocks(discriminator)
    if not 0 <= blocks <= len(available):
        raise SystemExit(f"--freeze_d {blocks}: this discriminator has {len(available)} blocks (0 = freeze none)")
    frozen = {id(p) for block in available[:blocks] for layer in block for p in layer.parameters()}
    names = []
    for name, parameter in discriminator.named_parameters():
        if id(parameter) in frozen:
            parameter.frozen = True
            parameter.requires_grad = False
            names.append(name)
    return names


def warm_start(module, state, source, config):
    """Load the tensors of `state` that `module` has, of the same shapes; returns (loaded, new,
    dropped) names. A tensor both have with different shapes is refused, naming both."""
    own = module.state_dict()
    mismatched = [
        f"{name}: {source} has {tuple(state[name].shape)}, {describe_model(config)} {tuple(tensor.shape)}"
        for name, tensor in own.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if mismatched:
        raise SystemExit(
            "the checkpoint's tensors do not fit the model (another size or channel count?):\n  "
            + "\n  ".join(mismatched[:5])
            + "\npass --size, --channel_multiplier and --channel_max of the checkpoint"
        )
    loaded = [name for name in own if name in state]
    module.load_state_dict({**own, **{name: state[name] for name in loaded}})
    return loaded, [name for name in own if name not in state], [name for name in state if name not in own]


def summary(names):
    """'style (16), conv1 (5)': tensor names counted by their top-level module."""
    counts = {}
    for name in names:
        counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + 1
    return ", ".join(f"{key} ({count})" for key, count in counts.items()) or "none"


def load_weights(step, checkpoint, source, config):
    """Start `step` (a GANStep) from the weights of a checkpoint without optimiser states (see the
    module docstring); the optimisers stay fresh. Prints what was loaded, on rank 0."""
    stored = model_config(checkpoint.get("args"))
    # the entry each module starts from: its own, else the other generator's
    entries = {"g": ("g", "g_ema"), "g_ema": ("g_ema", "g"), "d": ("d",)}
    entries = {key: next((entry for entry in options if entry in checkpoint), None) for key, options in entries.items()}
    states = {key: checkpoint[entry] if entry else None for key, entry in entries.items()}
    lines = [f"fine-tuning from the weights of {source} (no optimiser states): iteration 0, fresh optimisers"]
    modules = {"g": unwrap(step.generator), "g_ema": step.g_ema, "d": unwrap(step.discriminator)}
    for key, module in modules.items():
        what = f"{source} ('{entries[key]}')"
        if states[key] is None:
            lines.append(f"  {key}: not in the checkpoint, trained from scratch")
        elif key == "d" or stored["position"] == config.position:
            load_model_state(module, states[key], what, config)
            lines.append(f"  {key}: loaded from {what}")
        else:
            loaded, new, dropped = warm_start(module, states[key], what, config)
            lines.append(f"  {key}: warm start from {what}, position {stored['position']} to {config.position}")
            lines.append(f"    loaded {len(loaded)}: {summary(loaded)}")
            lines.append(f"    new, initialised as from scratch: {', '.join(new) or 'none'}")
            lines.append(f"    dropped: {', '.join(dropped) or 'none'}")
    if distributed.get_rank() == 0:
        print("\n".join(lines), file=sys.stderr)
