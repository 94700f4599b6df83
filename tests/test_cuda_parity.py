"""fp32 training on the GPU against the CPU: a few iterations of a tiny MS-PE model from the same
initialisation, images, latents and noise, once in each layout that the speed settings train in
(the original grouped modulated convolution, the plain one, the plain one channels-last). The GPU
runs the custom CUDA ops, the CPU their PyTorch references, so a kernel or layout that computes
something else shows here as training that drifts. benchmarks/bench.py --report runs it with the
other CUDA tests; its assertion messages carry the measured differences."""

import pytest
import torch

from training import gan
from training.distributed import unwrap
from utils.device import setup_precision

MODEL = {"size": 32, "position": "mspe", "latent": 32, "channel_multiplier": 2, "channel_max": 32}
STEP_SETTINGS = gan.StepSettings(latent=MODEL["latent"])
BATCH = 4
ITERATIONS = 4
# losses may differ in rounding only
LOSS_TOLERANCE = 1e-3
# Adam moves a weight by at most about lr per step, so weights whose gradients differ only in
# rounding can still end up to 2 lr apart per iteration
WEIGHT_BOUND = 2 * STEP_SETTINGS.lr * ITERATIONS


class SeededStep(gan.GANStep):
    """A GANStep whose latents and noise maps are drawn on the CPU from its own seeded generator,
    so that the same iterations can run on two devices with the same inputs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rng = torch.Generator().manual_seed(2)

    def fake_images(self, batch):
        generator = unwrap(self.generator)
        latent = torch.randn(batch, self.settings.latent, generator=self.rng).to(generator.device)
        noise = [noise.to(generator.device) for noise in generator.make_noise(batch, rng=self.rng)]
        with self.autocast():
            return self.generate([latent], noise=noise)[0]


def train(device, modconv, channels_last):
    """ITERATIONS fp32 training iterations of the tiny model on `device`, initialised on the CPU;
    returns the losses of each iteration and the EMA generator's final weights (float32, CPU)."""
    device = torch.device(device)
    setup_precision("fp32", device)
    models = gan.build_models(MODEL, "cpu", modconv=modconv)
    generator, discriminator, g_ema = (module.to(device) for module in models)
    real = torch.rand(BATCH, 3, MODEL["size"], MODEL["size"], generator=torch.Generator().manual_seed(1)) * 2 - 1
    real = real.to(device)
    if channels_last:
        gan.use_channels_last(generator, discriminator, g_ema)
        real = real.contiguous(memory_format=torch.channels_last)
    g_optim, d_optim = gan.build_optimizers(generator, discriminator, STEP_SETTINGS)
    step = SeededStep(generator, discriminator, g_ema, g_optim, d_optim, STEP_SETTINGS)
    losses = [{name: value.item() for name, value in step(iteration, real).items()} for iteration in range(ITERATIONS)]
    return losses, {name: value.float().cpu() for name, value in step.g_ema.state_dict().items()}


@pytest.fixture(scope="module")
def cpu_training():
    """The CPU's run in the original layout, which every layout on the GPU is held to."""
    return train("cpu", "grouped", channels_last=False)


@pytest.mark.cuda
@pytest.mark.parametrize(
    "modconv,channels_last",
    [("grouped", False), ("plain", False), ("plain", True)],
    ids=["grouped", "plain", "plain-channels-last"],
)
def test_fp32_training_on_the_gpu_follows_the_cpu(cpu_training, modconv, channels_last):
    cpu_losses, cpu_weights = cpu_training
    gpu_losses, gpu_weights = train("cuda", modconv, channels_last)
    loss_difference = max(
        abs(cpu[name] - gpu[name]) / max(abs(cpu[name]), 1e-8)
        for cpu, gpu in zip(cpu_losses, gpu_losses)
        for name in cpu
    )
    weight_difference = max((cpu_weights[name] - gpu_weights[name]).abs().max().item() for name in cpu_weights)
    figures = (
        f"{modconv} modulated convolution{', channels-last' if channels_last else ''}, {ITERATIONS} iterations: "
        f"largest relative loss difference {loss_difference:.2e} (tolerance {LOSS_TOLERANCE:.0e}), largest weight "
        f"difference {weight_difference:.2e} (Adam's bound {WEIGHT_BOUND:.0e})"
    )
    assert loss_difference < LOSS_TOLERANCE, f"the GPU's losses drift from the CPU's: {figures}"
    assert weight_difference <= WEIGHT_BOUND, f"the GPU's weights drift from the CPU's: {figures}"
