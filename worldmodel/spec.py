"""The embedded world model's architecture: the demo model's family (sana_stream/demo/spec.py) at the size that
steps in real time on 2 CPU cores, plus per-frame actions.

- frames: 64×64 first-person views of the procedural maze (worldmodel/sim), 10 steps per second;
- autoencoder: a DC-AE (AutoencoderDC config) with 8× spatial compression, applied per frame: a frame is an
  8×8×16 latent;
- transformer: a SanaVideoTransformer3DModel config with patch (1, 1, 1), so a frame is 64 tokens, width 128,
  and action_dim = 14 (worldmodel.actions); one latent frame per chunk, so every action gets its own frame;
- text encoder: a 1-layer Gemma-2 over the caption language "a walk through a <theme> maze".

Stepping: two denoising passes per frame (STEP_TIMESTEPS, from pure noise at t = 1000), then the t = 0 pass that
appends the frame to the history; a window of WINDOW frames of history, the length the model is trained on.
"""

from __future__ import annotations

from typing import Any

from sana_stream.demo import spec as demo

from .actions import ACTION_DIM, KEYS
from .sim.simulator import FOV_DEGREES, FRAME_SIZE
from .sim.textures import THEMES

SIZE = FRAME_SIZE[0]
FPS = 10
LATENT_CHANNELS = 16
TEXT_HIDDEN = 64
TEXT_LENGTH = 8  # BOS + the 6 words of a caption, with room to spare
WINDOW = 4  # latent frames of history
CONTEXT_FRAMES = 1  # the start frame, encoded, is the first history frame
TIMESTEPS = [1000.0]  # the training grid: half of the noise levels drawn in training are these
# Stepping: two denoising passes per action. The one-pass prediction (t = 1000 only) is the blurry conditional
# mean and drifts below the copy-last-frame baseline by 32 steps; a second pass at t = 500 keeps the frames
# sharper and beats the baseline at every evaluated horizon.
STEP_TIMESTEPS = [1000.0, 500.0]
# Action guidance (worldmodel.model.WorldConfig): each pass pushes the prediction away from the "none" one by this
# factor. With the Plücker maps (session 18, 32 held-out worlds): 2 gave the probe 44.6 % but fell below the
# copy-last-frame baseline from 32 steps on; 1.5 gave 43.8 % and beat it at every horizon; 1 gave 37.1 %. With the
# copy gate (session 24) the "none" row lands on the previous frame, so guidance scales each step's change itself:
# 1.5 inflated the latents step after step (their std 1.05 -> 1.5 within 10 steps), 1.15 let them fade (0.9), and
# 1.25-1.35 kept them near the data's.
# train-world's last stage distills it into the weights, so the SDK steps one row per world.
ACTION_GUIDANCE = 1.3
CLIP_CHUNKS = WINDOW + 1  # frames per training clip: a frame and a full window of history
EVAL_SEED_START = 1_000_000  # worlds with seeds from here on are never trained on
DEFAULT_PROMPT = "a walk through a brick maze"
WORDS = ["a", "walk", "through", "maze", *THEMES]

AUTOENCODER: dict[str, Any] = dict(
    _class_name="AutoencoderDC",
    in_channels=3, latent_channels=LATENT_CHANNELS, attention_head_dim=16,
    encoder_block_types=["ResBlock"] * 3 + ["EfficientViTBlock"],
    decoder_block_types=["ResBlock"] * 3 + ["EfficientViTBlock"],
    encoder_block_out_channels=[8, 32, 64, 128], decoder_block_out_channels=[8, 32, 64, 128],
    encoder_layers_per_block=[0, 1, 1, 2], decoder_layers_per_block=[0, 1, 1, 2],
    encoder_qkv_multiscales=[[]] * 4, decoder_qkv_multiscales=[[]] * 4,
    downsample_block_type="pixel_unshuffle", upsample_block_type="pixel_shuffle",
    decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=1.0,  # set from data after training
)

# The demo model's transformer with a token per latent pixel (64 a frame: the 16 tokens of 2×2 patches could not
# hold the next view) and, to pay for them, width 128 (4 heads); this text width; and actions, also drawn per
# token as Plücker maps of the simulator camera's motion.
TRANSFORMER: dict[str, Any] = dict(demo.TRANSFORMER, caption_channels=TEXT_HIDDEN, sample_size=SIZE // 8,
                                   patch_size=[1, 1, 1], num_attention_heads=4, num_cross_attention_heads=4,
                                   cross_attention_dim=128, action_dim=ACTION_DIM, action_plucker_fov=FOV_DEGREES)

TEXT_ENCODER: dict[str, Any] = dict(
    hidden_size=TEXT_HIDDEN, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
    num_key_value_heads=1, head_dim=32, max_position_embeddings=16, sliding_window=16,
    pad_token_id=0, eos_token_id=1, bos_token_id=2,
)

STREAM = dict(chunk_frames=1, timesteps=TIMESTEPS, window=WINDOW, guidance_scale=1.0)
GENERATE = dict(sampler="flow_euler", num_inference_steps=4, guidance_scale=1.0, shift=1.0, instruction="",
                negative_prompt="", motion_score=None, num_frames=32, height=SIZE, width=SIZE,
                text_length=TEXT_LENGTH)


def build_text_model(vocab_size: int, seed: int):
    return demo.build_text_model(vocab_size, seed, TEXT_ENCODER)


def world_json(action_guidance: float = ACTION_GUIDANCE) -> dict[str, Any]:
    """world.json: how the SDK steps this model (read by worldmodel.model); action_guidance 1 for weights that
    carry it (train-world's guidance distillation)."""
    return {"action_dim": ACTION_DIM, "keys": list(KEYS), "frame_size": list(FRAME_SIZE), "fps": FPS,
            "frames_per_step": 1, "timesteps": STEP_TIMESTEPS, "window": WINDOW, "prompt": DEFAULT_PROMPT,
            "context_frames": CONTEXT_FRAMES, "action_guidance": action_guidance}
