"""Samplers: step-for-step parity with the diffusers schedulers, LongSANA math, CFG, image-to-video helpers."""

from __future__ import annotations

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, SCMScheduler

from sana_stream.sampling import (
    LONGSANA_TIMESTEPS,
    FlowDPMSolver,
    FlowEulerSampler,
    LongSanaSampler,
    SCMSampler,
    classifier_free_guidance,
    flow_input_scale,
    flow_to_trigflow,
    frame_timesteps,
    hold_conditioning_frames,
    make_sampler,
    shift_sigmas,
    sigmas_to_timesteps,
    trigflow_to_flow_time,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (2, 4, 3, 8, 8)  # (B, C, T, H, W)
ATOL = 1e-5


def model_outputs(num_steps: int, seed: int = 0) -> list[torch.Tensor]:
    """Random tensors standing in for the transformer's outputs, one per step."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=g) for _ in range(num_steps)]


def initial_noise(seed: int = 1) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


# --- the shifted grid --------------------------------------------------------------------------------------


def test_shift_keeps_ends_and_gives_the_longsana_timesteps():
    sigmas = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    shifted = shift_sigmas(sigmas, 8.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert torch.all(shifted[1:-1] > sigmas[1:-1])  # shift > 1 moves every interior level toward noise
    # LongSANA's [1000, 960, 889, 727] is the shift-8 warp of [1, 0.75, 0.5, 0.25].
    assert sigmas_to_timesteps(shifted.flip(0)[:-1]).round().tolist() == list(LONGSANA_TIMESTEPS)
    assert torch.equal(shift_sigmas(sigmas, 1.0), sigmas)


# --- parity with diffusers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_steps", [1, 2, 5, 28])
@pytest.mark.parametrize("shift", [1.0, 3.0, 8.0])
def test_flow_euler_matches_diffusers(num_steps, shift):
    ours = FlowEulerSampler(num_steps, shift=shift)
    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(num_steps)
    assert torch.equal(ours.timesteps, ref.timesteps)
    assert torch.equal(ours.sigmas, ref.sigmas)

    x = y = initial_noise()
    for i, (t, v) in enumerate(zip(ref.timesteps, model_outputs(num_steps))):
        x = ours.step(v, i, x)
        y = ref.step(v, t, y).prev_sample
        assert x.dtype == torch.float32
        assert (x - y).abs().max() <= ATOL, f"step {i}"


def dpm_reference(shift: float) -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift)


@pytest.mark.parametrize("num_steps", [1, 2, 3, 20, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0, 8.0])
def test_flow_dpm_solver_matches_diffusers(num_steps, shift):
    ours = FlowDPMSolver(num_steps, shift=shift)
    ref = dpm_reference(shift)
    ref.set_timesteps(num_steps)
    assert torch.equal(ours.timesteps, ref.timesteps.float())  # diffusers' are int64; same values
    assert torch.equal(ours.sigmas, ref.sigmas)

    x = y = initial_noise()
    for i, (t, v) in enumerate(zip(ref.timesteps, model_outputs(num_steps))):
        x = ours.step(v, i, x)
        y = ref.step(v, t, y).prev_sample
        assert (x - y).abs().max() <= ATOL, f"step {i}"
    # The final step lands on sigma = 0 and returns the data prediction x0 = x - sigma * v.
    assert ours.sigmas[-1] == 0


def test_flow_dpm_solver_object_is_reusable_across_runs():
    sampler = FlowDPMSolver(4, shift=3.0)
    outputs, results = model_outputs(4), []
    for _ in range(2):
        x = initial_noise()
        for i, v in enumerate(outputs):
            x = sampler.step(v, i, x)
        results.append(x)
    assert torch.equal(results[0], results[1])


def run_sprint_pipeline_math(num_steps: int, sigma_data: float, seed: int):
    """diffusers' SanaSprintPipeline loop with SCMScheduler and random transformer outputs: returns the
    scheduler's timesteps, the (input, timestep) the transformer saw each step, the latents after each step and
    the decoded-space output."""
    scheduler = SCMScheduler(sigma_data=sigma_data)
    scheduler.set_timesteps(num_steps, intermediate_timesteps=1.3 if num_steps == 2 else None)
    scheduler.set_begin_index(0)
    generator = torch.Generator().manual_seed(seed)
    latents = initial_noise() * sigma_data
    seen, after = [], []
    for t, v in zip(scheduler.timesteps[:-1], model_outputs(num_steps)):
        timestep = t.expand(SHAPE[0])
        flow_t = torch.sin(timestep) / (torch.cos(timestep) + torch.sin(timestep))
        ft = flow_t.view(-1, 1, 1, 1, 1)
        model_in = latents / sigma_data * torch.sqrt(ft**2 + (1 - ft) ** 2)
        seen.append((model_in, flow_t))
        trig = ((1 - 2 * ft) * model_in + (1 - 2 * ft + 2 * ft**2) * v) / torch.sqrt(ft**2 + (1 - ft) ** 2)
        latents, denoised = scheduler.step(trig * sigma_data, timestep, latents, generator=generator, return_dict=False)
        after.append(latents)
    return scheduler.timesteps, seen, after, denoised / sigma_data


@pytest.mark.parametrize("num_steps", [1, 2, 3, 4])
@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_scm_matches_diffusers_sprint(num_steps, sigma_data):
    taus, seen, after, output = run_sprint_pipeline_math(num_steps, sigma_data, seed=7)
    ours = SCMSampler(num_steps)
    assert torch.equal(ours.taus, taus)
    if num_steps == 2:
        assert torch.allclose(ours.taus, torch.tensor([1.5708, 1.3, 0.0]))

    generator = torch.Generator().manual_seed(7)
    x = initial_noise()  # unit noise: the sampler works in units of sigma_data
    for i, v in enumerate(model_outputs(num_steps)):
        model_in, flow_t = seen[i]
        assert torch.equal(ours.timesteps[i].expand(SHAPE[0]), flow_t)
        assert (ours.model_input(x, i) - model_in).abs().max() <= ATOL
        x = ours.step(v, i, x, generator=generator)
        assert (x * sigma_data - after[i]).abs().max() <= ATOL, f"step {i}"
    assert (x - output).abs().max() <= ATOL


def test_trigflow_bridge_is_exact_for_a_perfect_flow_model():
    g = torch.Generator().manual_seed(3)
    x0, z = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    for tau in (1.5, 1.3, 0.7, 0.2):
        tau = torch.tensor(tau)
        t = trigflow_to_flow_time(tau)
        y = torch.cos(tau) * x0 + torch.sin(tau) * z
        x_flow = y * flow_input_scale(t)
        assert (x_flow - ((1 - t) * x0 + t * z)).abs().max() <= ATOL  # a point on the flow path at time t
        trig = flow_to_trigflow(x_flow, z - x0, t)
        assert (trig - (torch.cos(tau) * z - torch.sin(tau) * x0)).abs().max() <= ATOL  # dy/dtau
    # One sCM step with the exact velocity recovers x0.
    sampler = SCMSampler(1)
    y = torch.cos(sampler.taus[0]) * x0 + torch.sin(sampler.taus[0]) * z
    assert (sampler.step(z - x0, 0, y) - x0).abs().max() <= 1e-4


# --- LongSANA ----------------------------------------------------------------------------------------------


def test_longsana_defaults():
    sampler = LongSanaSampler()
    assert sampler.timesteps.tolist() == [1000.0, 960.0, 889.0, 727.0]
    assert torch.allclose(sampler.sigmas, torch.tensor([1.0, 0.96, 0.889, 0.727, 0.0]))


def test_longsana_step_math():
    sampler = LongSanaSampler()
    g = torch.Generator().manual_seed(5)
    x, v = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    x0 = x - sampler.sigmas[1] * v
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(11))
    expected = (1 - sampler.sigmas[2]) * x0 + sampler.sigmas[2] * noise
    got = sampler.step(v, 1, x, generator=torch.Generator().manual_seed(11))
    assert (got - expected).abs().max() <= ATOL
    # The last step returns x0 and draws no noise (no generator needed).
    assert torch.equal(sampler.step(v, 3, x), x - sampler.sigmas[3] * v)


def run_longsana(sampler, velocity, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=generator)
    for i, t in enumerate(sampler.timesteps):
        x = sampler.step(velocity(x, t / 1000), i, x, generator=generator)
    return x


def test_longsana_recovers_x0_from_an_oracle_model():
    target = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    oracle = lambda x, sigma: (x - target) / sigma  # noqa: E731 - the v that makes x - sigma*v == target
    out = run_longsana(LongSanaSampler([1000, 800, 500, 100, 20]), oracle, seed=0)
    assert (out - target).abs().max() <= 1e-4


def test_longsana_is_deterministic_for_a_seed():
    sampler = LongSanaSampler()
    shrink = lambda x, sigma: 0.5 * x  # noqa: E731 - output depends on the noise drawn
    a, b = run_longsana(sampler, shrink, seed=4), run_longsana(sampler, shrink, seed=4)
    assert torch.equal(a, b)
    assert not torch.allclose(a, run_longsana(sampler, shrink, seed=5))


# --- CFG and image-to-video --------------------------------------------------------------------------------


def test_classifier_free_guidance():
    uncond, cond = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(classifier_free_guidance(uncond, cond, 4.5), uncond + 4.5 * (cond - uncond))
    assert torch.equal(classifier_free_guidance(uncond, cond, 1.0), cond)
    assert classifier_free_guidance(uncond.bfloat16(), cond.bfloat16(), 2.0).dtype == torch.float32


def test_frame_timesteps_hold_conditioning_frames_at_zero():
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0]])
    t = FlowEulerSampler(10, shift=8.0).timesteps[3]
    got = frame_timesteps(t, mask)
    assert got.shape == (2, 4)
    # diffusers' SanaImageToVideoPipeline: t.expand(mask.shape) * (1 - mask)
    assert torch.equal(got, t.expand(mask.shape) * (1 - mask.float()))
    assert torch.equal(frame_timesteps(500.0, mask.bool())[1], torch.tensor([0.0, 0.0, 500.0, 500.0]))


def test_image_to_video_loop_matches_diffusers():
    """Stepping every frame and restoring the conditioning frame equals diffusers' SanaImageToVideoPipeline,
    which steps only frames 1: (checked with the stateful DPM solver)."""
    num_steps, cond_latents = 6, torch.randn(SHAPE)
    mask = torch.zeros(SHAPE[0], SHAPE[2], dtype=torch.bool)
    mask[:, 0] = True
    ours, ref = FlowDPMSolver(num_steps, shift=8.0), dpm_reference(8.0)
    ref.set_timesteps(num_steps)
    x = y = hold_conditioning_frames(initial_noise(), cond_latents, mask)
    for i, (t, v) in enumerate(zip(ref.timesteps, model_outputs(num_steps))):
        assert torch.equal(frame_timesteps(ours.timesteps[i], mask), t.expand(mask.shape) * (1 - mask.float()))
        x = hold_conditioning_frames(ours.step(v, i, x), cond_latents, mask)
        y = torch.cat([y[:, :, :1], ref.step(v[:, :, 1:], t, y[:, :, 1:]).prev_sample], dim=2)
        assert (x - y).abs().max() <= ATOL, f"step {i}"


def test_hold_conditioning_frames():
    sample, cond = torch.randn(SHAPE), torch.randn(SHAPE)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    out = hold_conditioning_frames(sample, cond, mask)
    assert torch.equal(out[0, :, 0], cond[0, :, 0])
    assert torch.equal(out[0, :, 1:], sample[0, :, 1:])
    assert torch.equal(out[1], sample[1])


# --- factory and bad arguments -----------------------------------------------------------------------------


def test_make_sampler():
    assert isinstance(make_sampler("flow_dpm_solver", num_steps=20, shift=3.0), FlowDPMSolver)
    assert isinstance(make_sampler("flow_euler", num_steps=20, shift=3.0), FlowEulerSampler)
    assert isinstance(make_sampler("scm", num_steps=2), SCMSampler)
    assert isinstance(make_sampler("longsana"), LongSanaSampler)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("ddim", num_steps=20)


@pytest.mark.parametrize("cls", [FlowEulerSampler, FlowDPMSolver, SCMSampler])
@pytest.mark.parametrize("num_steps", [0, -3, 2.5])
def test_bad_step_counts(cls, num_steps):
    with pytest.raises(ValueError, match="num_steps"):
        cls(num_steps)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FlowEulerSampler(10, shift=0.0), "shift"),
        (lambda: FlowDPMSolver(10, shift=-1.0), "shift"),
        (lambda: SCMSampler(2, intermediate_tau=1.6), "intermediate_tau"),
        (lambda: SCMSampler(2, max_tau=2.0), "max_tau"),
        (lambda: LongSanaSampler([1000, 889, 960]), "strictly decreasing"),
        (lambda: LongSanaSampler([1000, 1000]), "strictly decreasing"),
        (lambda: LongSanaSampler([1200, 500]), "lie in"),
        (lambda: LongSanaSampler([500, 0]), "lie in"),
        (lambda: LongSanaSampler([]), "at least one"),
        (lambda: frame_timesteps(10.0, torch.zeros(2, 3, 1)), r"\(B, T\)"),
        (lambda: frame_timesteps(10.0, torch.full((2, 3), 0.5)), "0/1"),
        (lambda: frame_timesteps(torch.ones(2), torch.zeros(2, 3)), "scalar"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_step_calls():
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="step_index"):
        FlowEulerSampler(4).step(x, 4, x)
    dpm = FlowDPMSolver(4)
    dpm.step(x, 0, x)
    with pytest.raises(ValueError, match="in order"):
        dpm.step(x, 2, x)
    with pytest.raises(ValueError, match="torch.Generator"):
        LongSanaSampler().step(x, 0, x)
    with pytest.raises(ValueError, match="torch.Generator"):
        SCMSampler(2).step(x, 0, x)
