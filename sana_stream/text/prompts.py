"""Prompt text as the reference pipelines build it, before any tokeniser sees it.

The reference SANA pipelines prepend a fixed "complex human instruction" (CHI) to the user prompt: the
text encoder is an instruction-tuned chat model (Gemma-2-2B-it), and the DiT was trained on its hidden
states for prompts framed this way. Video prompts may also end with a motion-score sentence the video
model was trained with. Negative prompts get neither.
"""

from __future__ import annotations

# Reference data, verbatim from the SANA releases (the lines are joined with "\n" as the reference does).
IMAGE_INSTRUCTION = "\n".join([
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
])

VIDEO_INSTRUCTION = "\n".join([
    "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for video generation. Evaluate the level of detail in the user prompt:",
    "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, motion, and temporal relationships to create vivid and dynamic scenes.",
    "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
    "Here are examples of how to transform or refine prompts:",
    "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat slowly settling into a curled position, peacefully falling asleep on a warm sunny windowsill, with gentle sunlight filtering through surrounding pots of blooming red flowers.",
    "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps gradually lighting up, a diverse crowd of people in colorful clothing walking past, and a double-decker bus smoothly passing by towering glass skyscrapers.",
    "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
    "User Prompt: ",
])

VIDEO_NEGATIVE_PROMPT = (
    "A chaotic sequence with misshapen, deformed limbs in heavy motion blur, sudden disappearance, jump cuts, "
    "jerky movements, rapid shot changes, frames out of sync, inconsistent character shapes, temporal artifacts, "
    "jitter, and ghosting effects, creating a disorienting visual experience."
)


def as_prompt_list(prompt: object) -> list[str]:
    """A prompt or a batch of prompts as a list; anything else is a caller bug worth a clear message.

    The empty string is a valid prompt: it is the unconditional (classifier-free guidance) input.
    """
    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, (list, tuple)):
        raise ValueError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
    if not prompt:
        raise ValueError(f"prompt must be a string or a list of strings, got an empty {type(prompt).__name__}")
    for item in prompt:
        if not isinstance(item, str):
            raise ValueError(
                f"prompt must be a string or a list of strings, got a {type(prompt).__name__} "
                f"holding {type(item).__name__}"
            )
    return list(prompt)


def prepare_prompt(prompt: str, motion_score: int | None = None) -> str:
    """The user's text as the encoder sees it (without the instruction prefix).

    The motion sentence goes on the raw prompt, before cleaning, as the SanaVideoPipeline usage does;
    cleaning is the reference default (lowercase + strip; the optional bs4/ftfy caption cleaner is
    off by default there and not reproduced here).
    """
    if motion_score is not None:
        prompt = f"{prompt} motion score: {motion_score}."
    return prompt.lower().strip()
