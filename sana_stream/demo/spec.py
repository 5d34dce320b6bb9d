"""The embedded demo model's architecture: the real model families at toy sizes, sized for real time on 2 CPU
cores at 256×256 (DESIGN §3 shapes, our own numbers).

- autoencoder: a DC-AE (AutoencoderDC config) with 32× spatial compression: a 256² frame is an 8×8×16 latent;
  narrow high-resolution stages, because small-channel convolutions dominate decode time on a CPU;
- text encoder: a 2-layer Gemma-2 with a word-level tokenizer over the caption language, pretrained on the
  captions (demo/text.py) and then frozen, as SANA freezes its Gemma; saved in transformers' folder format;
- transformer: a SanaVideoTransformer3DModel config — ReLU linear attention with 3-D RoPE, Mix-FFN with the
  temporal conv, per-frame timesteps — 64 tokens per frame (patch 1).
"""

from __future__ import annotations

from typing import Any

SIZE = 256
FPS = 16
LATENT_CHANNELS = 16
TEXT_HIDDEN = 128
TEXT_LENGTH = 32  # tokens the DiT sees per prompt (BOS + 31): the longest captions fit

AUTOENCODER: dict[str, Any] = dict(
    _class_name="AutoencoderDC",
    in_channels=3, latent_channels=LATENT_CHANNELS, attention_head_dim=16,
    encoder_block_types=["ResBlock"] * 4 + ["EfficientViTBlock"] * 2,
    decoder_block_types=["ResBlock"] * 4 + ["EfficientViTBlock"] * 2,
    encoder_block_out_channels=[4, 8, 16, 32, 64, 128], decoder_block_out_channels=[4, 8, 16, 32, 64, 128],
    encoder_layers_per_block=[0, 1, 1, 1, 1, 1], decoder_layers_per_block=[0, 1, 1, 1, 1, 1],
    encoder_qkv_multiscales=[[]] * 6, decoder_qkv_multiscales=[[]] * 6,
    downsample_block_type="pixel_unshuffle", upsample_block_type="pixel_shuffle",
    decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=1.0,  # set from data after training
)
LATENT_SIZE = SIZE // 2 ** (len(AUTOENCODER["encoder_block_out_channels"]) - 1)  # every stage after the first halves

TRANSFORMER: dict[str, Any] = dict(
    _class_name="SanaVideoTransformer3DModel",
    in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, num_attention_heads=6, attention_head_dim=32,
    num_layers=4, num_cross_attention_heads=6, cross_attention_head_dim=32, cross_attention_dim=192,
    caption_channels=TEXT_HIDDEN, mlp_ratio=2.5, attention_bias=False, sample_size=LATENT_SIZE,
    patch_size=[1, 1, 1], norm_elementwise_affine=False, norm_eps=1e-6, qk_norm="rms_norm_across_heads",
    rope_max_seq_len=1024,
)

TEXT_ENCODER: dict[str, Any] = dict(
    hidden_size=TEXT_HIDDEN, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32, max_position_embeddings=64, sliding_window=64,
    pad_token_id=0, eos_token_id=1, bos_token_id=2,
)
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]

# Streaming: chunks of 3 latent (= pixel) frames, 3 re-noising steps, a window of 2 chunks of history (what the
# model sees in training), CFG 3 against the empty prompt on every chunk (without it, a prompt switch sometimes
# never brings its object in or lets it fade: 2-min streams over 3 seeds kept 88 / 83 / 95 % of their windows,
# with it 100 / 100 / 100 %, for 0.8x the frame rate). The opening chunk, made from nothing, decides the object's
# colour, which the model keeps from then on: it gets 8 re-noising steps, CFG 8 on all but the first
# (benchmarks/demo_model.py: held-out colour 52 % -> 84 %, seen 42 % -> 84 %; first frame about 200–280 ms instead
# of 135 ms). Each finished chunk enters the history noised to t = 250 (context noise): v4 moves its objects and,
# reading its own chunks clean, let them fade within a minute (2-min streams kept 67 / 72 / 63 % of their windows;
# with it 100 / 100 / 95 %; t = 150: 88 % on seed 0). v5 is trained for a history at t = 250 and streams at 300:
# 98.3 / 100 / 98.3 % of the windows, against 91.7 / 96.7 / 96.7 % at 250, the same motion within 2 prompts.
# README: how the settings were chosen.
STREAM = dict(chunk_frames=3, timesteps=[1000.0, 750.0, 500.0], window=2, guidance_scale=3.0, anchor_guidance=8.0,
              anchor_timesteps=[1000.0, 875.0, 750.0, 625.0, 500.0, 375.0, 250.0, 125.0], context_noise=300.0)
# generate_video / generate_image defaults for the demo family.
GENERATE = dict(sampler="flow_euler", num_inference_steps=8, guidance_scale=1.0, shift=1.0, instruction="",
                negative_prompt="", motion_score=None, num_frames=48, height=SIZE, width=SIZE,
                text_length=TEXT_LENGTH)
CLIP_CHUNKS = STREAM["window"] + 1  # chunks per training clip: a chunk and a full window of history


def build_tokenizer(words: list[str]):
    """A word-level fast tokenizer (BOS added, right padding) that AutoTokenizer reloads from its folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(set(words)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", padding_side="right")


def build_text_model(vocab_size: int, seed: int, config: dict[str, Any] = TEXT_ENCODER):
    """A freshly initialised Gemma-2 text encoder of `config`'s size (the demo's by default), seeded."""
    import torch
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    return Gemma2Model(Gemma2Config(vocab_size=vocab_size, **config))
