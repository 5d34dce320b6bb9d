"""What differs between the Sana pipelines: defaults and how latents become pixels (DESIGN §4)."""

from __future__ import annotations

from dataclasses import dataclass

from ..text import IMAGE_INSTRUCTION, VIDEO_INSTRUCTION, VIDEO_NEGATIVE_PROMPT

# diffusers pipeline class -> our family name
PIPELINE_CLASSES = {
    "SanaPipeline": "image",
    "SanaPAGPipeline": "image",
    "SanaSprintPipeline": "sprint",
    "SanaVideoPipeline": "video",
    "SanaImageToVideoPipeline": "video",
    "SanaVideoImageToVideoPipeline": "video",
}


@dataclass(frozen=True)
class FamilyDefaults:
    sampler: str
    num_inference_steps: int
    guidance_scale: float
    shift: float
    instruction: str
    negative_prompt: str
    motion_score: int | None  # video prompts get " motion score: N." appended
    num_frames: int | None  # pixel frames; None for image families
    height: int | None  # None: the transformer's sample size × the VAE's factor
    width: int | None
    text_length: int = 300  # tokens of text conditioning per prompt


FAMILIES = {
    "image": FamilyDefaults("flow_dpm_solver", 20, 4.5, 3.0, IMAGE_INSTRUCTION, "", None, None, None, None),
    "sprint": FamilyDefaults("scm", 2, 4.5, 1.0, IMAGE_INSTRUCTION, "", None, None, None, None),
    "video": FamilyDefaults("flow_dpm_solver", 50, 6.0, 8.0, VIDEO_INSTRUCTION, VIDEO_NEGATIVE_PROMPT, 10, 81,
                            480, 832),
}

# diffusers scheduler class -> (our sampler, the config field holding its shift)
SCHEDULERS = {
    "DPMSolverMultistepScheduler": ("flow_dpm_solver", "flow_shift"),
    "FlowMatchEulerDiscreteScheduler": ("flow_euler", "shift"),
    "SCMScheduler": ("scm", None),
}
