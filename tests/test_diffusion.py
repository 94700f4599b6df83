"""diffusion.py, training/diffusion.py and the scripts on diffusion checkpoints: the schedules
against their closed forms, the samplers with the exact denoiser of Gaussian data, the process,
the samplers and the UNet against openai/improved-diffusion's outputs, training and bit-exact
resume of a tiny UNet per position, exact shift equivariance with circular padding, and
generation and metrics on a tiny diffusion checkpoint."""

import contextlib
import json
import math
import os
import re

import pytest
import torch
from PIL import Image

import apply_factor
import generate
import metrics
import ppl
import projector
import train
from checkpoint import load_checkpoint, load_generator
from diffusion import (
    DiffusionGenerator,
    GaussianDiffusion,
    SamplerSettings,
    UNet,
    beta_schedule,
    diffusion_config,
    timestep_embedding,
)
from formulas import formula_state
from training.diffusion import build_diffusion_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAME = "ddpm"
# 16 px, 8 and 16 channels, two levels, attention at 8 px: an iteration takes milliseconds
TINY = [
    *"--arch ddpm --size 16 --channels 8 --channel_mult 1,2 --num_res_blocks 1 --attention_resolutions 8".split(),
    *"--batch 2 --n_sample 2 --translate 1.0 --workers 0 --log_every 2".split(),
]
TINY_CONFIG = {"size": 16, "channels": 8, "channel_mult": "1,2", "num_res_blocks": 1, "attention_resolutions": "8"}


@pytest.fixture(scope="module")
def lmdb16(tmp_path_factory):
    """An LMDB of 8 synthetic faces at 16 px."""
    from prepare_data import prepare

    out = str(tmp_path_factory.mktemp("faces16") / "lmdb")
    prepare(out, [16], n_synthetic=8, seed=0, n_worker=1, verbose=False)
    return out


def train_here(cwd, lmdb_path, *flags):
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        return train.main(["--name", NAME, "--path", lmdb_path, *TINY, *flags])
    finally:
        os.chdir(previous)


# ---------------------------------------------------------------------------------------------
# the process


def test_schedules_match_their_closed_forms():
    linear = GaussianDiffusion(beta_schedule("linear", 1000))
    assert torch.allclose(linear.betas, torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), rtol=0, atol=1e-15)
    expected = [math.prod(1 - b for b in linear.betas[: t + 1].tolist()) for t in (0, 499, 999)]
    assert torch.allclose(linear.alphas_cumprod[[0, 499, 999]], torch.tensor(expected, dtype=torch.float64), rtol=1e-12)

    cosine = GaussianDiffusion(beta_schedule("cosine", 1000))

    def f(t):
        return math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    unclipped = [t for t in range(1000) if cosine.betas[t] < 0.999]
    assert len(unclipped) >= 990 and cosine.betas.max() == 0.999  # the last steps are clipped
    closed = torch.tensor([f(t + 1) / f(0) for t in unclipped], dtype=torch.float64)
    assert torch.allclose(cosine.alphas_cumprod[unclipped], closed, rtol=1e-9, atol=1e-12)

    # posterior q(x_{t-1} | x_t, x_0) from Bayes' rule: precision alpha_t / beta_t + 1 / (1 - abar_{t-1})
    x0, x_t = torch.tensor([0.7, -0.2]).double(), torch.tensor([0.1, -1.5]).double()
    for process in (linear, cosine):
        abar_table = process.alphas_cumprod.tolist()
        for t in (1, 10, 500, 998):
            beta, abar_prev = process.betas[t].item(), abar_table[t - 1]
            variance = 1 / ((1 - beta) / beta + 1 / (1 - abar_prev))
            mean = variance * (math.sqrt(1 - beta) * x_t / beta + math.sqrt(abar_prev) * x0 / (1 - abar_prev))
            got_mean, got_variance, got_beta = process.q_posterior(x0, x_t, abar_table[t], abar_prev)
            assert torch.allclose(got_mean, mean, rtol=1e-9)
            assert math.isclose(got_variance, variance, rel_tol=1e-9) and math.isclose(got_beta, beta, rel_tol=1e-9)
        # the first step's posterior is x_0 itself
        mean, variance, _ = process.q_posterior(x0, x_t, abar_table[0], 1.0)
        assert variance == 0 and torch.allclose(mean, x0, rtol=1e-12)

    # q_sample at the last step is nearly pure noise
    noise = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    x_T = linear.q_sample(torch.ones_like(noise), torch.full((4,), 999), noise)
    assert torch.allclose(x_T, noise, atol=0.01)


def gaussian_denoiser(process, mu, sigma):
    """E[eps | x_t] for data N(mu, sigma^2): sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar sigma^2 + 1 - abar)."""

    def denoiser(x, t):
        abar = process.alphas_cumprod[t].view(-1, 1)
        return (1 - abar).sqrt() * (x - abar.sqrt() * mu) / (abar * sigma**2 + 1 - abar)

    return denoiser


def sample_gaussian(sigma, sampler, steps, eta=0.0, variance="beta_tilde", n=20000, mu=0.3):
    """Samples [n, 1] of the linear-schedule process with the exact denoiser of N(mu, sigma^2)."""
    process = GaussianDiffusion(beta_schedule("linear", 1000))
    denoiser = gaussian_denoiser(process, mu, sigma)
    rng = torch.Generator().manual_seed(0)
    return process.sample(
        denoiser, (n, 1), sampler, steps, eta, variance, generator=rng, clip_denoised=False, dtype=torch.float64
    )


def draws_the_data(samples, mu=0.3, sigma=0.5):
    """Mean and standard deviation within four standard errors of the data's (mean: sigma /
    sqrt(n), std: sigma / sqrt(2 n)), plus 1% of sigma for the discretisation."""
    n = len(samples)
    mean_ok = abs(samples.mean().item() - mu) < 4 * sigma / math.sqrt(n) + 0.01 * sigma
    std_ok = abs(samples.std().item() - sigma) < 4 * sigma / math.sqrt(2 * n) + 0.01 * sigma
    return mean_ok and std_ok


@pytest.mark.parametrize(
    "sampler, steps, eta, variance",
    [
        ("ddim", 250, 0.0, "beta_tilde"),
        ("ddim", 1000, 0.0, "beta_tilde"),
        ("ddim", 1000, 0.5, "beta_tilde"),
        ("ddpm", 1000, 0.0, "beta_tilde"),
        ("ddpm", 1000, 0.0, "beta"),
        ("ddpm", 250, 0.0, "beta"),
    ],
)
def test_samplers_with_the_exact_denoiser_draw_the_data_distribution(sampler, steps, eta, variance):
    assert draws_the_data(sample_gaussian(0.5, sampler, steps, eta, variance))
    if sampler == "ddpm":
        # beta-tilde for beta draws the data as well, so the variance of one step tells them apart:
        # two steps from x_T = 0 with a denoiser that predicts no noise and z = 1 end at the first
        # step's sigma over sqrt(abar) of the second (its posterior mean is its x_0 estimate)
        process = GaussianDiffusion(beta_schedule("linear", 1000))
        abar, abar_next = (process.alphas_cumprod[t].item() for t in process.timesteps(2))
        beta = 1 - abar / abar_next
        expected = beta if variance == "beta" else beta * (1 - abar_next) / (1 - abar)
        x_0 = process.sample(
            lambda x, t: torch.zeros_like(x),
            (1, 1),
            "ddpm",
            2,
            variance=variance,
            x_T=torch.zeros(1, 1),
            step_noise=lambda k, shape: torch.ones(shape),
            clip_denoised=False,
            dtype=torch.float64,
        )
        assert (x_0.item() * math.sqrt(abar_next)) ** 2 == pytest.approx(expected, rel=1e-9)


def test_a_wrong_denoiser_fails_the_sampler_check():
    assert not draws_the_data(sample_gaussian(0.55, "ddim", 250))
    assert not draws_the_data(sample_gaussian(0.5, "ddim", 250, mu=0.33))


def test_few_step_ddim_is_the_discretised_flow_in_closed_form():
    """For Gaussian data each deterministic DDIM step from t to t' scales x_t - sqrt(abar_t) mu by
    (sqrt(abar_t abar_t') sigma^2 + sqrt((1 - abar_t)(1 - abar_t'))) / (abar_t sigma^2 + 1 - abar_t),
    abar = 1 after the last step: few steps shrink the spread (Cauchy-Schwarz), and the sampler
    must match that product to rounding."""
    process = GaussianDiffusion(beta_schedule("cosine", 1000))
    mu, sigma = -0.1, 0.6
    x_T = torch.randn(16, 1, dtype=torch.float64)
    steps = process.timesteps(10)
    abar = [process.alphas_cumprod[t].item() for t in steps] + [1.0]
    factor = math.prod(
        (math.sqrt(a * b) * sigma**2 + math.sqrt((1 - a) * (1 - b))) / (a * sigma**2 + 1 - a)
        for a, b in zip(abar, abar[1:])
    )
    expected = mu + factor * (x_T - math.sqrt(abar[0]) * mu)
    denoiser = gaussian_denoiser(process, mu, sigma)
    samples = process.sample(denoiser, (16, 1), "ddim", 10, x_T=x_T, clip_denoised=False, dtype=torch.float64)
    assert torch.allclose(samples, expected, rtol=0, atol=1e-10)  # float64 rounding over ten steps reaches 2e-12
    assert factor < 0.9 * sigma  # ten steps are too few for the spread of the data


def test_one_step_jumps_from_pure_noise_to_the_data():
    """One step is t = T-1 to the data: the exact denoiser's estimate of x_0, which for Gaussian data
    barely depends on x_T. (A step at t = 0 would return x_T almost unchanged.)"""
    process = GaussianDiffusion(beta_schedule("linear", 1000))
    assert process.timesteps(1) == [999]
    x_T = torch.randn(64, 1, dtype=torch.float64)
    denoiser = gaussian_denoiser(process, 0.3, 0.5)
    samples = process.sample(denoiser, (64, 1), "ddim", 1, x_T=x_T, clip_denoised=False, dtype=torch.float64)
    assert (samples - 0.3).abs().max() < 0.01


def test_a_linear_schedule_too_short_for_its_betas_is_refused():
    with pytest.raises(ValueError, match="linear schedule needs more than 20 diffusion_steps, not 20"):
        diffusion_config({"schedule": "linear", "diffusion_steps": 20})
    assert diffusion_config({"schedule": "linear", "diffusion_steps": 21})["diffusion_steps"] == 21
    assert diffusion_config({"schedule": "cosine", "diffusion_steps": 10})["diffusion_steps"] == 10


def test_ddim_with_eta_one_is_ddpm_with_beta_tilde():
    process = GaussianDiffusion(beta_schedule("cosine", 200))
    denoiser = gaussian_denoiser(process, -0.2, 0.4)
    x_T = torch.randn(64, 1, dtype=torch.float64)
    noises = torch.randn(40, 64, 1, dtype=torch.float64)

    def run(sampler, eta):
        step_noise = lambda k, shape: noises[k]  # noqa: E731
        return process.sample(denoiser, (64, 1), sampler, 40, eta, x_T=x_T, step_noise=step_noise, dtype=torch.float64)

    assert torch.allclose(run("ddim", 1.0), run("ddpm", 0.0), rtol=0, atol=1e-12)
    assert not torch.allclose(run("ddim", 0.0), run("ddpm", 0.0), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# against openai/improved-diffusion

# the denoiser both processes ran for the reference data: a fixed mix of each pixel's channels plus
# a function of t; its x_0 estimates leave [-1, 1], so that clipping takes part
REFERENCE_MIX = torch.tensor([[0.9, 0.2, -0.1], [-0.3, 0.8, 0.2], [0.1, -0.2, 1.1]], dtype=torch.float64)


def reference_denoiser(x, t):
    """eps(x, t) = REFERENCE_MIX x (over the channels of each pixel) + 0.3 sin(t / 7)."""
    mixed = torch.einsum("ij,njhw->nihw", REFERENCE_MIX.to(x.dtype), x)
    return mixed + 0.3 * torch.sin(t.to(x.dtype) / 7).view(-1, 1, 1, 1)


@pytest.fixture(scope="module")
def improved_diffusion():
    """tests/data/improved_diffusion_reference.pt holds what openai/improved-diffusion (commit
    1bc7bbb, improved_diffusion/gaussian_diffusion.py, respace.py and script_util.py) computed
    with reference_denoiser as its model, from the stored `inputs` (drawn after
    torch.manual_seed(0)):

    - schedules: betas, alphas_cumprod, posterior_variance and posterior_log_variance_clipped of
      GaussianDiffusion(betas=get_named_beta_schedule(schedule, T)), linear and cosine, every
      entry at T = 100 and those at `indices` at T = 1000;
    - process, per schedule at T = 100: q_sample(x0, t, noise); q_posterior_mean_variance(x0,
      that x_t, t); p_mean_variance(model, x_t, t) with clip_denoised True and False
      (pred_xstart, mean) and with FIXED_SMALL and FIXED_LARGE (variance, log_variance);
      training_losses(model, x0, t, noise=noise)["loss"] (EPSILON, LossType.MSE), per sample;
    - spacing: sorted(space_timesteps(T, [steps])) for steps 2..100 at T = 100 and 2..64 at
      T = 1000, concatenated;
    - chains: of create_gaussian_diffusion(steps=100, sigma_small=(variance == "beta_tilde"),
      noise_schedule=schedule, rescale_timesteps=False, timestep_respacing=str(steps)), its
      timestep_map, betas and posterior_variance, and the "sample" of every step of
      p_sample_loop_progressive (ddpm) or ddim_sample_loop_progressive(eta=eta) from noise=x_T
      with clip_denoised=clip, torch.randn_like replaced so that step k draws step_noise[k].

    Their _extract_into_tensor casts the float64 tables to float32 before use; the data were made
    with it keeping float64 (that cast alone changed), so that both sides compute in float64 and
    a difference beyond rounding is a difference of formula."""
    return torch.load(os.path.join(ROOT, "tests", "data", "improved_diffusion_reference.pt"), weights_only=True)


def step_variances(process, timesteps):
    """(beta-tilde, beta) [len(timesteps)] of the steps from each of the ascending `timesteps` to
    the one before it (from the first to the data), as q_posterior gives them."""
    abar = process.alphas_cumprod.tolist()
    zero = torch.zeros((), dtype=torch.float64)
    previous = [-1, *timesteps[:-1]]
    steps = [
        process.q_posterior(zero, zero, abar[t], abar[s] if s >= 0 else 1.0)[1:] for s, t in zip(previous, timesteps)
    ]
    return tuple(torch.tensor(values, dtype=torch.float64) for values in zip(*steps))


def assert_same_tables(ours, theirs, what):
    """Betas and variances, 1 minus a ratio near 1: both sides round them to 1e-16 absolute."""
    torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-15, msg=what)


def test_schedules_and_posterior_variances_match_improved_diffusion(improved_diffusion):
    """Betas, alpha-bars and the posterior's beta-tilde of both schedules, and its log, which
    theirs clips at t = 0 (where beta-tilde is 0 and no noise is added) to that of t = 1."""
    for name, tables in improved_diffusion["schedules"].items():
        schedule, steps = re.fullmatch(r"([a-z]+)(\d+)", name).groups()
        process = GaussianDiffusion(beta_schedule(schedule, int(steps)))
        indices = tables["indices"]
        beta_tilde = step_variances(process, list(range(process.num_timesteps)))[0][indices]
        assert_same_tables(process.betas[indices], tables["betas"], name)
        torch.testing.assert_close(process.alphas_cumprod[indices], tables["alphas_cumprod"], rtol=1e-13, atol=0)
        assert_same_tables(beta_tilde, tables["posterior_variance"], name)
        # the log of a variance rounded to 1e-16 absolute near 1e-5 (the cosine schedule's start)
        log_variance = tables["posterior_log_variance_clipped"]
        torch.testing.assert_close(beta_tilde[1:].log(), log_variance[1:], rtol=0, atol=1e-11, msg=name)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_process_posterior_and_loss_match_improved_diffusion(improved_diffusion, schedule):
    """q_sample; the posterior of x_0 and that of the denoiser's x_0 estimate, clipped or not; both
    DDPM variances; the training loss: at eight timesteps of T = 100, 0 and 99 among them."""
    inputs, expected = improved_diffusion["inputs"], improved_diffusion["process"][schedule]
    t, x0, noise = inputs["t"], inputs["x0"], inputs["noise"]
    process = GaussianDiffusion(beta_schedule(schedule, 100))
    x_t = process.q_sample(x0, t, noise)
    torch.testing.assert_close(x_t, expected["q_sample"], rtol=1e-13, atol=1e-14)

    abar = process.alphas_cumprod.tolist()
    steps = [(abar[step], abar[step - 1] if step else 1.0) for step in t.tolist()]
    means, beta_tilde, beta = zip(*[process.q_posterior(x0[i], x_t[i], *step) for i, step in enumerate(steps)])
    torch.testing.assert_close(torch.stack(means), expected["posterior_mean"], rtol=1e-13, atol=1e-14)
    assert_same_tables(torch.tensor(beta_tilde, dtype=torch.float64), expected["posterior_variance"], "beta-tilde")
    # at t = 0 theirs stands t = 1's beta-tilde in for beta and for the log of beta-tilde (0): that
    # step adds no noise
    noisy = t > 0
    for name, variances in (("beta_tilde", beta_tilde), ("beta", beta)):
        ours = torch.tensor(variances, dtype=torch.float64)[noisy]
        assert_same_tables(ours, expected[f"p_variance_{name}"][noisy], name)
        torch.testing.assert_close(ours.log(), expected[f"p_log_variance_{name}"][noisy], rtol=0, atol=1e-11)

    eps = reference_denoiser(x_t, t)
    for clip in (True, False):
        estimates = torch.stack([process.estimate_x0(x_t[i], eps[i], step[0], clip) for i, step in enumerate(steps)])
        torch.testing.assert_close(estimates, expected[f"pred_xstart_clip{clip}"], rtol=1e-13, atol=1e-14)
        means = torch.stack([process.q_posterior(estimates[i], x_t[i], *step)[0] for i, step in enumerate(steps)])
        torch.testing.assert_close(means, expected[f"p_mean_clip{clip}"], rtol=1e-13, atol=1e-14)
    assert not torch.equal(expected["pred_xstart_clipTrue"], expected["pred_xstart_clipFalse"])  # clipping took part

    # ours averages the squared error over every element in float32 (theirs per sample, in float64)
    loss = process.training_loss(reference_denoiser, x0, t, noise)
    assert loss.item() == pytest.approx(expected["training_loss"].mean().item(), rel=1e-6)


def test_spaced_timesteps_match_improved_diffusion_but_at_exact_halves(improved_diffusion):
    """Ours rounds linspace(0, T-1, steps), theirs a running sum of the stride (T-1) / (steps-1):
    the same timesteps, except where k (T-1) / (steps-1) is exactly a half, which each rounds by
    its own floating-point error to either neighbour (at T = 1000 the middle timestep of 21 steps
    is 500 here and 499 there)."""
    differences = 0
    for name, flat in improved_diffusion["spacing"].items():
        total = int(name[1:])
        process = GaussianDiffusion(beta_schedule("cosine", total))
        start, steps = 0, 2
        while start < len(flat):
            theirs = flat[start : start + steps].tolist()
            ours = sorted(process.timesteps(steps))
            for k, (mine, their) in enumerate(zip(ours, theirs)):
                half = 2 * k * (total - 1) % (2 * (steps - 1)) == steps - 1
                assert mine == their or (half and abs(mine - their) == 1), (total, steps, k, mine, their)
                differences += mine != their
            start, steps = start + steps, steps + 1
    assert differences > 0  # the data hold such ties, so the rule above is tested


def sample_step_by_step(process, chain, x_T, step_noise):
    """Every step's x of our sampler run with a chain's settings: what it hands the denoiser after
    the first step, then the sample."""
    denoised = []

    def denoiser(x, t):
        denoised.append(x)
        return reference_denoiser(x, t)

    sample = process.sample(
        denoiser,
        x_T.shape,
        chain["sampler"],
        chain["steps"],
        chain["eta"],
        chain["variance"],
        x_T=x_T,
        step_noise=lambda k, shape: step_noise[k],
        clip_denoised=chain["clip"],
        dtype=torch.float64,
    )
    return torch.stack([*denoised[1:], sample])


def test_samplers_match_improved_diffusion_step_by_step(improved_diffusion):
    """DDPM with either variance and DDIM with eta 0, 0.5 and 1, over all T = 100 steps and fewer,
    x_0 estimates clipped or not: from the same x_T with the same per-step noise every step lands
    where theirs does, which pins down the respacing, the posterior and DDIM's sigma."""
    x_T, step_noise = improved_diffusion["inputs"]["x_T"], improved_diffusion["inputs"]["step_noise"]
    for chain in improved_diffusion["chains"]:
        what = "{schedule} {sampler} eta {eta} {variance}, {steps} steps, clip {clip}".format(**chain)
        process = GaussianDiffusion(beta_schedule(chain["schedule"], 100))
        timesteps = process.timesteps(chain["steps"])
        assert timesteps == chain["timesteps"].flip(0).tolist(), what
        beta_tilde, beta = step_variances(process, timesteps[::-1])
        assert_same_tables(beta, chain["betas"], what)
        assert_same_tables(beta_tilde, chain["posterior_variance"], what)
        # the x_0 estimate of the first step divides x_T by sqrt(abar_{T-1}) (5e-4 in the cosine
        # schedule, 5e-3 in the linear one), which scales its float64 rounding up as much
        rtol = 1e-13 / process.alphas_cumprod[-1].sqrt().item()
        trajectory = sample_step_by_step(process, chain, x_T, step_noise)
        torch.testing.assert_close(trajectory, chain["trajectory"], rtol=rtol, atol=1e-13, msg=what)


# ---------------------------------------------------------------------------------------------
# the UNet


def tiny_unet(position, padding="zeros", **options):
    torch.manual_seed(0)
    settings = {"size": 16, "channels": 8, "channel_mult": (1, 2, 2), "num_res_blocks": 1, "dropout": 0.0}
    return UNet(**{**settings, "attention_resolutions": (8,), **options}, position=position, padding=padding)


def perturb(module, seed=0):
    """Add small seeded noise to every parameter: zero-initialised branches come alive."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=rng, dtype=parameter.dtype) * 0.05)
    return module


def test_pe_places_and_zero_gammas():
    none, sspe, mspe = (tiny_unet(position) for position in ("none", "sspe", "mspe"))
    # sspe: the input resolution only; mspe: the first block of each of 3 levels, encoder and decoder
    assert (len(none.pe_places()), len(sspe.pe_places()), len(mspe.pe_places())) == (0, 1, 6)
    # the PE draws no random numbers: the same seed gives the same weights with any position
    weights = none.state_dict()
    assert all(torch.equal(value, weights[name]) for name, value in mspe.state_dict().items() if "gamma" not in name)
    perturb(none)
    for unet in (sspe, mspe):
        unet.load_state_dict(none.state_dict(), strict=False)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 700])
    # zero gammas: the positional UNet computes what the plain one computes
    assert torch.equal(none(x, t), mspe(x, t)) and torch.equal(none(x, t), sspe(x, t))
    with torch.no_grad():
        mspe.pe_places()[-1].gamma.fill_(1.0)
    assert not torch.allclose(none(x, t), mspe(x, t))
    with pytest.raises(ValueError, match="multiples of the UNet's total downsampling 4"):
        mspe(torch.randn(1, 3, 16, 18), t[:1])


def circular_generator(position, gamma):
    unet = perturb(tiny_unet(position, "circular").double())  # nonzero branches: every layer counts
    with torch.no_grad():
        for place in unet.pe_places():
            place.gamma.fill_(gamma)
    process = GaussianDiffusion(beta_schedule("linear", 1000))
    return DiffusionGenerator(unet, process).eval()


@pytest.mark.parametrize("position, gamma", [("mspe", 0.0), ("mspe", 1.0), ("none", 0.0)])
@pytest.mark.parametrize("sampler", [SamplerSettings("ddim", 4, 0.0), SamplerSettings("ddpm", 4)])
def test_integer_circular_shift_of_the_noise_shifts_the_sample_exactly(position, gamma, sampler):
    """Circular padding, and shifts by a multiple of the total downsampling (4): every layer
    commutes with the roll (the strided convolutions see the same pixel phases, the PE moves by
    whole pixels of each level), so the sample moves by the shift, to rounding (float64). An odd
    shift breaks the strided convolutions' phase and changes the sample."""
    generator = circular_generator(position, gamma)
    generator.sampler = sampler
    x_T, step_seed = generator.make_noise(2, rng=torch.Generator().manual_seed(1))
    x_T = x_T.double()
    latents = torch.zeros(2, 0)
    with torch.no_grad():
        reference = generator([latents], noise=[x_T, step_seed])[0]
        unshifted = generator([latents], noise=[x_T, step_seed], shift_h=0, shift_w=0)[0]
        assert torch.equal(unshifted, reference)
        for shift_h, shift_w in [(4, -8), (12, 4)]:
            moved = torch.roll(x_T, (shift_h, shift_w), (2, 3))
            image = generator([latents], noise=[moved, step_seed], shift_h=shift_h, shift_w=shift_w)[0]
            assert torch.allclose(image, torch.roll(reference, (shift_h, shift_w), (2, 3)), rtol=0, atol=1e-10)
        moved = torch.roll(x_T, (1, 0), (2, 3))
        image = generator([latents], noise=[moved, step_seed], shift_h=1, shift_w=0)[0]
        assert (image - torch.roll(reference, (1, 0), (2, 3))).abs().max() > 1e-4


# the tiny UNet whose formula weights openai/improved-diffusion's UNetModel ran for the reference
# data: two levels of two blocks, 32 and 64 channels (32 groups in every GroupNorm, as theirs), and
# attention at 8 px, in the encoder, the middle block and the decoder
REFERENCE_UNET = {
    "size": 16,
    "channels": 32,
    "channel_mult": (1, 2),
    "num_res_blocks": 2,
    "attention_resolutions": (8,),
    "dropout": 0.1,
}


@pytest.fixture(scope="module")
def improved_diffusion_unet():
    """tests/data/improved_diffusion_unet.pt holds what openai/improved-diffusion's UNetModel
    (commit 1bc7bbb, improved_diffusion/unet.py and nn.py) computed, run once outside the
    repository on the CPU (torch 2.14.1), from the stored `inputs`:

    - x [4, 3, 16, 16] float64, 1.5 sin(2 pi r / p) over the flat index i = 0, 1, ... with
      formula_state's r and p (noise-like, in [-1.5, 1.5]), and t = (0, 37, 500, 999);
    - the model: UNetModel(in_channels=3, model_channels=32, out_channels=3, num_res_blocks=2,
      attention_resolutions=(2,) (theirs are downsampling rates: 16 px / 8 px), dropout=0.1,
      channel_mult=(1, 2), conv_resample=True, dims=2, num_classes=None, use_checkpoint=False,
      num_heads=1, use_scale_shift_norm=False) in eval mode, its strict load_state_dict given
      formula_state(the state dict of UNet(**REFERENCE_UNET, position="none"), weight_gain=
      sqrt(2)) under their keys: input_conv as input_blocks.0.0; encoder.i as input_blocks.(i+1),
      its res as .0, its attention as .1, a Downsample's conv as .0.op; middle.j as
      middle_block.j; the decoder's Levels in turn as output_blocks.0, 1, ..., res as .0,
      attention as .1, and an Upsample's conv in the output block of the Level before it, after
      that Level's layers (.2.conv here); embed_layers as emb_layers, skip as skip_connection,
      proj as proj_out; time_embed and out under their own names. time_embed.0.weight's columns
      were put in their embedding's channel order: their column j is our column
      their_channel_order(32)[j];
    - 'float32': eps = model(x.float(), t) and timestep_embedding(t, 32) of their code as it is;
    - 'float64': the same with the model and x in float64, in a copy of their code where the
      float32 casts of GroupNorm32.forward (x.float()), of QKVAttention.forward's softmax
      (weight.float()) and of timestep_embedding (frequencies made in float32, timesteps.float())
      keep float64 (those alone changed), so that both sides compute in float64 and a difference
      beyond rounding is a difference of formula."""
    return torch.load(os.path.join(ROOT, "tests", "data", "improved_diffusion_unet.pt"), weights_only=True)


@contextlib.contextmanager
def default_dtype(dtype):
    """torch's default dtype set to `dtype` inside the block, and back after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def their_channel_order(dim):
    """Our timestep embedding's channels in improved-diffusion's order: cos of every frequency,
    then sin of every frequency (ours: sin, cos of each frequency in turn)."""
    return torch.cat([torch.arange(1, dim, 2), torch.arange(0, dim, 2)])


def reference_unet_eps(x, t, dtype):
    """eps of our REFERENCE_UNET with formula weights, in eval mode, for x and t, computed in
    `dtype`. It is torch's default dtype meanwhile: our timestep_embedding makes its frequencies
    in that dtype (t it takes in float32, exact for whole timesteps)."""
    with default_dtype(dtype):
        unet = UNet(**REFERENCE_UNET, position="none").eval()
        unet.load_state_dict(formula_state(unet.state_dict(), weight_gain=math.sqrt(2)))
        with torch.no_grad():
            return unet(x.to(dtype), t)


def test_timestep_embedding_is_improved_diffusions_in_another_channel_order(improved_diffusion_unet):
    """Theirs is [cos(t f_k) for every k, sin(t f_k) for every k], ours sin(t f_k), cos(t f_k) for
    each k in turn, f_k = 10000^(-2k / dim) on both sides: the same values, channel for channel once
    reordered, in float64 to rounding and in float32 within its spacing at angles up to 999
    radians (6e-5; on this torch the two agree exactly, in either dtype)."""
    t, order = improved_diffusion_unet["inputs"]["t"], their_channel_order(32)
    for name, dtype, atol in (("float64", torch.float64, 1e-12), ("float32", torch.float32, 2e-4)):
        with default_dtype(dtype):
            ours = timestep_embedding(t, 32)
        theirs = improved_diffusion_unet[name]["timestep_embedding"]
        assert ours.dtype == theirs.dtype == dtype
        torch.testing.assert_close(ours[:, order], theirs, rtol=0, atol=atol, msg=name)


def test_unet_is_improved_diffusions_unet_model(improved_diffusion_unet):
    """Our UNet and their UNetModel, the same weights mapped onto each, give the same eps: in
    float64 to rounding (6.7e-15 apart, measured, for eps up to 2.8), so that the time MLP, the
    ResBlocks (GroupNorm of 32 groups, the embedding added after the first conv, the 1x1 skips),
    the single-head attention (the q, k, v split, the 1 / sqrt(channels) scale), the resampling and
    the order of the skip connections are theirs; in float32, their code unchanged, within 5e-5
    (2.4e-6 measured: each side lies within 3e-6 of its float64 eps).

    Each difference tried moved some eps by 0.2 or more, but GroupNorm's eps of 1e-6 for 1e-5 (by
    3.7e-4): sin and cos swapped in the embedding, or its frequencies 10000^(-k / dim); the
    attention unscaled, q swapped with k or with v, or without its GroupNorm; the middle block
    without attention; a skip concatenated before h; 16 groups; the embedding's SiLU dropped;
    bilinear upsampling; the output head without its SiLU."""
    inputs = improved_diffusion_unet["inputs"]
    eps = reference_unet_eps(inputs["x"], inputs["t"], torch.float64)
    torch.testing.assert_close(eps, improved_diffusion_unet["float64"]["eps"], rtol=0, atol=1e-12)
    eps = reference_unet_eps(inputs["x"], inputs["t"], torch.float32)
    torch.testing.assert_close(eps, improved_diffusion_unet["float32"]["eps"], rtol=0, atol=5e-5)


# ---------------------------------------------------------------------------------------------
# training


def assert_same_state(a, b, what):
    for key in ("g", "g_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{what}: {key}.{name} differs"
    for index, state in a["g_optim"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["g_optim"]["state"][index][name]), f"{what}: g_optim {index} {name}"
    assert a["data"] == b["data"], what


@pytest.mark.parametrize("position", ["none", "sspe", "mspe"])
def test_tiny_unet_trains_and_resumes_bit_exactly(tmp_path, lmdb16, position):
    flags = ["--position", position, "--save_every", "2", "--sample_every", "4"]
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    whole.mkdir(), halves.mkdir()
    trainer = train_here(whole, lmdb16, *flags, "--iter", "4")
    train_here(halves, lmdb16, *flags, "--iter", "2")
    train_here(halves, lmdb16, *flags, "--iter", "4", "--ckpt", "latest")

    a, b = (load_checkpoint(str(run / "checkpoint" / NAME / "000004.pt")) for run in (whole, halves))
    assert_same_state(a, b, position)
    assert a["args"].arch == "ddpm" and a["args"].channel_mult == "1,2" and a["args"].lr == 2e-4
    gammas = [value for name, value in a["g"].items() if name.endswith("gamma")]
    assert len(gammas) == {"none": 0, "sspe": 1, "mspe": 4}[position]
    assert all(gamma.abs().item() > 0 for gamma in gammas)  # the PE's weights learn from zero
    assert math.isfinite(trainer.last_logged["loss"]) and trainer.last_logged["loss"] > 0
    with Image.open(whole / "sample" / NAME / "000004.png") as grid:
        assert grid.size[1] >= 16


def grid_step(*flags):
    args, _ = train.parse_args(["--name", NAME, "--path", "unused", *TINY, *flags])
    return build_diffusion_step(args, torch.device("cpu"))


def test_a_diffusion_run_refuses_the_gans_flags(tmp_path, lmdb16, monkeypatch):
    """--r1 or --augment would change nothing in a diffusion run: it stops before training."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="trains a diffusion model, which does not read --augment, --mixing, --r1"):
        train.main(["--name", NAME, "--path", lmdb16, *TINY, "--iter", "2", "--r1", "5", "--mixing", "0", "--augment"])
    assert not os.path.exists(tmp_path / "checkpoint")


def test_sample_grids_draw_with_the_chosen_sampler_alike_at_every_grid_and_batching():
    ddpm, ddim = grid_step("--sampler", "ddpm", "--steps", "4"), grid_step("--steps", "4")
    perturb(ddpm.ema), perturb(ddim.ema)  # an untrained UNet predicts zeros: every sampler agrees
    x_T = ddpm.sample_inputs(4, torch.Generator().manual_seed(0))
    grid = ddpm.sample(x_T)
    # a stochastic sampler, its per-step noise the same at every grid, in whatever batches the loop
    # asks (up to the convolutions' rounding, which depends on the batch), a sample's following its x_T
    assert torch.equal(grid, ddpm.sample(x_T))
    assert torch.allclose(grid, torch.cat([ddpm.sample(x) for x in x_T.split(1)]), atol=1e-4)
    assert torch.allclose(ddpm.sample(x_T[[1, 0]])[1], grid[0], atol=1e-4)
    assert (grid - ddim.sample(x_T)).abs().max() > 1e-2
    for flags, message in ((["--steps", "5000"], "steps must be from 1"), (["--eta", "-1"], "eta must be 0 or more")):
        with pytest.raises(SystemExit, match=f"sample grids' sampler.*{message}"):
            grid_step(*flags)


# ---------------------------------------------------------------------------------------------
# scripts on a diffusion checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, lmdb16):
    """(folder, checkpoint path) of a 2-iteration mspe diffusion run."""
    folder = tmp_path_factory.mktemp("ddpm_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_here(folder, lmdb16, "--position", "mspe", "--iter", "2", "--sample_every", "100")
    finally:
        torch.set_num_threads(threads)
    return folder, str(folder / "checkpoint" / NAME / "000002.pt")


def test_the_scripts_of_a_gans_style_latent_refuse_a_diffusion_model_by_name(
    tiny_checkpoint, monkeypatch, make_tiny_checkpoint
):
    folder, path = tiny_checkpoint
    monkeypatch.chdir(folder)
    gan = make_tiny_checkpoint(folder / "gan.pt")
    face = os.path.join(ROOT, "ref_face", "00006.png")
    commands = [
        ("projection (into W or W+)", lambda: projector.main(["--ckpt", path, "--loss", "mse", "--step", "1", face])),
        ("SeFa (directions in W)", lambda: apply_factor.main(["--ckpt", path, "factor.pt"])),
        ("PPL", lambda: ppl.main(["--lpips_weights", "absent.pth", path])),
        # a GAN first: refused before it is measured
        ("PPL", lambda: metrics.main(["ppl", "--ckpt", gan, path, "--lpips_weights", "absent.pth"])),
    ]
    for what, command in commands:
        with pytest.raises(SystemExit, match=f"holds a diffusion model .*: {re.escape(what)} works in a GAN's style"):
            command()


def test_checkpoint_rebuilds_the_model_and_refuses_other_flags(tiny_checkpoint, monkeypatch):
    folder, path = tiny_checkpoint
    generator, config = load_generator(path)
    assert (generator.unet.channels, generator.unet.total_downsampling, generator.position) == (8, 2, "mspe")
    assert generator.sampler == SamplerSettings()
    monkeypatch.chdir(folder)
    with pytest.raises(SystemExit, match="channels: .* has 8, the command line 16"):
        generate.main(["--name", NAME, "--ckpt", "000002.pt", "--channels", "16"])
    # a GAN's model flags mean nothing here (the checkpoint stores their defaults)
    with pytest.raises(SystemExit, match="holds a ddpm generator, which does not read --latent, --n_mlp"):
        generate.main(["--name", NAME, "--ckpt", "000002.pt", "--latent", "512", "--n_mlp", "2"])


def test_generation_modes_on_a_diffusion_checkpoint(tiny_checkpoint, monkeypatch):
    folder, _ = tiny_checkpoint
    monkeypatch.chdir(folder)
    common = ["--name", NAME, "--ckpt", "000002.pt", "--n_sample", "2", "--steps", "3", "--save", "grid"]
    out = folder / "generate" / NAME
    generate.main([*common, "--mode", "grid", "--sampler", "ddpm"])
    generate.main([*common, "--mode", "shift", "--pics", "2", "--radius", "4", "--eta", "0.5"])
    generate.main([*common, "--mode", "canvas", "--width", "32"])
    generate.main([*common, "--mode", "scale", "--scales", "1,2"])
    with Image.open(out / "canvas" / "grid_16x32.png") as canvas, Image.open(out / "grid" / "grid.png") as grid:
        assert canvas.width > grid.width and canvas.height == grid.height
    assert (out / "shift" / "grid.gif").is_file() and (out / "scale" / "grid_x2.png").is_file()
    with pytest.raises(SystemExit, match="--mode mix works in a GAN's style latent"):
        generate.main([*common, "--mode", "mix"])
    with pytest.raises(SystemExit, match="--mode rotate turns a GAN's positional input"):
        generate.main([*common, "--mode", "rotate"])
    with pytest.raises(SystemExit, match="circularly only"):
        generate.main([*common, "--mode", "shift", "--plane"])

    # an image depends on its seed only, not on the batch it is sampled in
    generator, _ = load_generator("checkpoint/ddpm/000002.pt")
    generator.sampler = SamplerSettings("ddpm", 3)
    alone = generate.grid_images(generate.Renderer(generator, batch=1), [5, 6])
    together = generate.grid_images(generate.Renderer(generator, batch=2), [5, 6])
    assert torch.allclose(alone, together, atol=1e-5) and not torch.allclose(alone[0], alone[1])


def test_metrics_on_a_diffusion_checkpoint(tiny_checkpoint, lmdb16, monkeypatch, capsys):
    folder, path = tiny_checkpoint
    monkeypatch.chdir(folder)
    fast = ["--steps", "2", "--batch", "4"]

    def eqt(sampler):
        """The EQ-T figures metrics.py writes with this --sampler."""
        metrics.main(["eqt", "--ckpt", path, "--n", "4", "--sampler", sampler, "--out", f"eqt-{sampler}", *fast])
        return json.loads((folder / f"eqt-{sampler}" / "eqt.json").read_text())["results"][0]

    with_ddpm = eqt("ddpm")
    printed = capsys.readouterr().out
    # whatever --sampler says, EQ-T samples deterministically, and says so (no noise maps to keep)
    assert "ddpm-mspe): EQ-T int" in printed and "(circular shifts, deterministic DDIM of 2 steps from x_T)" in printed
    # and measures what it says: DDIM's figures (finite, so that equal figures come from equal samples)
    assert math.isfinite(with_ddpm["eqt_int"]) and math.isfinite(with_ddpm["eqt_frac"])
    assert with_ddpm == eqt("ddim")
    swd_flags = "--patches 8 --directions 8 --repeats 1 --shifts 0,0.5 --n 4 --eqt_n 4".split()
    metrics.main(["report", "--ckpt", path, "--path", lmdb16, "--out", "report", *swd_flags, *fast])
    text = (folder / "report" / "report.md").read_text()
    assert "| ddpm-mspe |" in text and "border band" in text
    with pytest.raises(SystemExit, match="circularly"):
        metrics.main(["eqt", "--ckpt", path, "--n", "2", "--no_circular", *fast])
    with pytest.raises(SystemExit, match="EQ-R turns a GAN's input; .* measure eqt"):
        metrics.main(["eqr", "--ckpt", path, "--n", "2", *fast])


def test_bench_measures_diffusion_training_and_sampling(capsys):
    from benchmarks import bench, measure

    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # no tensor is made: no GPU needed
    sizes = [(config["size"], batch) for config, batch in measure.diffusion_workloads(bench.parse_args([]), cuda)]
    assert sizes == [(32, 128), (64, 64), (256, 16)]
    (single,) = measure.diffusion_workloads(bench.parse_args(["--size", "16", "--channels", "8"]), cpu)
    assert single[0]["arch"] == "ddpm" and single[0]["channels"] == 8 and single[0]["position"] == "mspe"
    tiny = "--diffusion --device cpu --size 16 --batch 2 --channels 8 --channel_mult 1,2 --attention_resolutions 8"
    bench.main([*tiny.split(), *"--warmup 1 --iters 1 --gen_iters 1 --ddim_steps 2".split()])
    table = capsys.readouterr().out
    assert "| ddpm-mspe, 16 px, batch 2 | 8 x 1,2, 2 blocks, attention 8 |" in table and "(2 steps) |" in table


def test_evidence_gives_the_diffusion_models_their_own_recipe(tmp_path, monkeypatch):
    import evidence

    monkeypatch.chdir(tmp_path)  # no runs trained here: the names are the settings' alone
    args = evidence.parse_args(["--models", "none,ddpm-none,ddpm-mspe"])
    ddpm = evidence.training_settings(args, "ddpm-mspe")
    recipe = evidence.DIFFUSION_RECIPES["cpu"]
    assert ddpm == {"size": 32, **{k: v for k, v in recipe.items() if k not in evidence.DIFFUSION_MEASURING}}
    measuring = SamplerSettings(recipe["sampler"], recipe["steps"])
    assert evidence.measuring_settings(args, "ddpm-none") == (recipe["n"], measuring)
    assert evidence.training_settings(args, "none")["batch"] == evidence.PRESETS["cpu"]["batch"]
    assert evidence.run_name(args, "ddpm-none", 0) != evidence.run_name(args, "ddpm-mspe", 0)
    # flags given to evidence.py override the recipe; the GAN runs keep their names
    scaled = evidence.parse_args(["--models", "none,ddpm-mspe", "--iter", "5", "--steps", "3"])
    assert evidence.final_checkpoint(scaled, "ddpm-mspe", 1).endswith("000005.pt")
    assert evidence.measuring_settings(scaled, "ddpm-mspe")[1].steps == 3
    assert evidence.run_name(scaled, "ddpm-mspe", 0) == evidence.run_name(args, "ddpm-mspe", 0)
    assert evidence.run_name(scaled, "none", 0) == evidence.run_name(args, "none", 0)


def test_denoising_error_is_zero_for_the_exact_denoiser_and_read_off_a_checkpoint(
    tiny_checkpoint, lmdb16, capsys, make_tiny_checkpoint, tmp_path
):
    from types import SimpleNamespace

    from benchmarks import denoising_error

    process = GaussianDiffusion(beta_schedule("linear", 1000))
    constant = torch.rand(1, 3, 8, 8) * 2 - 1
    images = constant.expand(6, -1, -1, -1)

    def exact(x, t):  # data that is always `constant`: eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)
        abar = process.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        return (x - abar.sqrt() * constant) / (1 - abar).sqrt()

    def model(denoiser):
        return SimpleNamespace(diffusion=process, denoiser=lambda: denoiser, unet=torch.nn.Linear(1, 1))

    timesteps = [0, 500, 999]
    for _, _, eps_error, x0_error in denoising_error.denoising_errors(model(exact), images, timesteps, batch=4):
        assert eps_error < 1e-8 and x0_error < 1e-6
    zero = denoising_error.denoising_errors(model(lambda x, t: torch.zeros_like(x)), images, timesteps, batch=4)
    assert [round(eps_error, 1) for _, _, eps_error, _ in zero] == [1.0, 1.0, 1.0]  # eps ~ N(0, 1)
    assert zero[-1][3] > 0.1  # x0^ = x_t / sqrt(abar): noise, clipped

    _, path = tiny_checkpoint
    denoising_error.main(["--ckpt", path, "--path", lmdb16, "--n", "4", "--timesteps", "0,999", "--weights", "g"])
    table = capsys.readouterr().out
    assert "(g), 4 real images" in table and table.count("\n| ") == 3  # the header and two timesteps
    with pytest.raises(ValueError, match="timestep 1000 is outside the model's 0..999"):
        denoising_error.main(["--ckpt", path, "--path", lmdb16, "--n", "4", "--timesteps", "1000"])
    gan = make_tiny_checkpoint(tmp_path / "gan.pt")
    with pytest.raises(SystemExit, match="holds a stylegan2 generator; this measures --arch ddpm"):
        denoising_error.main(["--ckpt", gan, "--path", lmdb16])


def test_evidence_measures_the_diffusion_models_with_the_recipes_sampler_and_again_when_it_changes(
    tmp_path, monkeypatch, capsys
):
    import csv

    import evidence

    monkeypatch.chdir(tmp_path)
    tiny = "--models ddpm-none --seeds 0 --iter 2 --batch 4 --size 16 --images 32 --n 8 --steps 2 --out report"

    def measured(sampler):
        evidence.main([*tiny.split(), "--sampler", sampler])
        with open(tmp_path / "report" / "runs.csv") as file:
            (row,) = csv.DictReader(file)
        return row, (tmp_path / "report" / "report.md").read_text()

    row, text = measured("ddpm")
    assert (row["sampler"], row["sampler_steps"]) == ("ddpm", "2")
    assert "8 samples each of DDPM (beta-tilde), 2 steps (EQ-T: deterministic DDIM" in text
    cache = tmp_path / "report" / "runs" / "ddpm-none-s0.json"
    stamp = os.path.getmtime(cache)
    # another sampler of as many steps is measured again, not read from the cache
    row, text = measured("ddim")
    assert (row["sampler"], row["sampler_steps"]) == ("ddim", "2") and os.path.getmtime(cache) > stamp
    assert "8 samples each of deterministic DDIM (eta 0), 2 steps" in text
    with pytest.raises(SystemExit):
        evidence.parse_args(["--sampler", "euler"])
    assert "--sampler takes one of ddim, ddpm, not 'euler'" in capsys.readouterr().err


def test_attention_at_a_size_no_level_works_at_is_warned_of(capsys):
    """--attention_resolutions names feature-map sizes: one the UNet has no level at would add
    nothing, silently."""
    args, _ = train.parse_args(["--name", NAME, "--path", "unused", *TINY, "--attention_resolutions", "32,8"])
    build_diffusion_step(args, torch.device("cpu"))
    message = capsys.readouterr().err
    assert "--attention_resolutions 32: the UNet has no level at that size (its levels work at 16, 8 px)" in message
    args, _ = train.parse_args(["--name", NAME, "--path", "unused", *TINY])
    build_diffusion_step(args, torch.device("cpu"))
    assert "attention" not in capsys.readouterr().err
