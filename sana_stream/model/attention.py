"""Self-attention (ReLU linear attention, optionally with RoPE) and cross-attention (softmax over the text).

Linear attention per head, with φ = ReLU and q̃ = R φ(q), k̃ = R φ(k) the rotated features:

    o_n = (Σ_m v_m k̃_mᵀ) q̃_n / ((Σ_m φ(k_m))ᵀ φ(q_n) + ε)

The two sums S = Σ v k̃ᵀ (d×d) and z = Σ φ(k) (d) are the whole memory of the past: chunk-causal attention is
a running sum over chunks, and streaming keeps S and z of the history (a constant size) instead of a KV cache.
Sums are accumulated in fp32 whatever the model dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .embeddings import RMSNorm, apply_rope

# (S, z) of one block: Σ v k̃ᵀ of shape (B, h, d, d) and Σ φ(k) of shape (B, h, d), both fp32.
AttentionSums = tuple[torch.Tensor, torch.Tensor]


def relu_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    chunks: list[tuple[int, int]],
    eps: float,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    history: AttentionSums | None = None,
    evicted: AttentionSums | None = None,
    record_chunk: int = -1,
) -> tuple[torch.Tensor, AttentionSums]:
    """q, k, v: (B, N, h, d). chunks: consecutive token ranges covering N; tokens attend to their own chunk,
    every earlier chunk and `history`. evicted: part of `history` that chunks after the first no longer see (a
    windowed stream drops its oldest chunk when the first chunk joins it). Returns the output (B, N, h, d) fp32
    and this input's own sums up to and including chunk `record_chunk`."""
    q, k, v = F.relu(q.float()), F.relu(k.float()), v.float()
    q_rot, k_rot = (apply_rope(q, *rope), apply_rope(k, *rope)) if rope is not None else (q, k)
    own_kv = own_z = None
    outputs, cumulative = [], []
    for i, (start, end) in enumerate(chunks):
        kv_c = torch.einsum("bnhv,bnhk->bhvk", v[:, start:end], k_rot[:, start:end])
        z_c = k[:, start:end].sum(dim=1)
        own_kv = kv_c if own_kv is None else own_kv + kv_c
        own_z = z_c if own_z is None else own_z + z_c
        cumulative.append((own_kv, own_z))
        if i == 1 and evicted is not None and history is not None:
            history = (history[0] - evicted[0], history[1] - evicted[1])
        kv, z = (own_kv, own_z) if history is None else (own_kv + history[0], own_z + history[1])
        numerator = torch.einsum("bhvk,bnhk->bnhv", kv, q_rot[:, start:end])
        denominator = torch.einsum("bhk,bnhk->bnh", z, q[:, start:end])
        outputs.append(numerator / (denominator.unsqueeze(-1) + eps))
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
    return out, cumulative[record_chunk]


class LinearSelfAttention(nn.Module):
    # Module names follow diffusers (to_q/to_k/to_v/to_out.0, norm_q/norm_k) so its checkpoints load as they are.
    def __init__(self, dim: int, heads: int, head_dim: int, qk_norm: bool, bias: bool, eps: float):
        super().__init__()
        self.heads, self.head_dim, self.eps = heads, head_dim, eps
        self.to_q = nn.Linear(dim, heads * head_dim, bias=bias)
        self.to_k = nn.Linear(dim, heads * head_dim, bias=bias)
        self.to_v = nn.Linear(dim, heads * head_dim, bias=bias)
        self.norm_q = RMSNorm(heads * head_dim, eps=1e-5) if qk_norm else None
        self.norm_k = RMSNorm(heads * head_dim, eps=1e-5) if qk_norm else None
        self.to_out = nn.ModuleList([nn.Linear(heads * head_dim, dim)])

    def forward(
        self,
        x: torch.Tensor,
        chunks: list[tuple[int, int]],
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        history: AttentionSums | None,
        evicted: AttentionSums | None = None,
        record_chunk: int = -1,
    ) -> tuple[torch.Tensor, AttentionSums]:
        """x: (B, N, D) -> (B, N, D), plus this input's own attention sums (see relu_linear_attention)."""
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        shape = (x.shape[0], x.shape[1], self.heads, self.head_dim)
        out, sums = relu_linear_attention(
            q.view(shape), k.view(shape), v.view(shape), chunks, self.eps, rope, history, evicted, record_chunk
        )
        return self.to_out[0](out.flatten(2).to(x.dtype)), sums


class CrossAttention(nn.Module):
    """Softmax attention from the video tokens to the text tokens; padding is an additive −1e4 bias."""

    def __init__(self, dim: int, heads: int, head_dim: int, qk_norm: bool):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, heads * head_dim)
        self.to_k = nn.Linear(dim, heads * head_dim)
        self.to_v = nn.Linear(dim, heads * head_dim)
        self.norm_q = RMSNorm(heads * head_dim, eps=1e-5) if qk_norm else None
        self.norm_k = RMSNorm(heads * head_dim, eps=1e-5) if qk_norm else None
        self.to_out = nn.ModuleList([nn.Linear(heads * head_dim, dim)])

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_bias: torch.Tensor | None) -> torch.Tensor:
        """x: (B, N, D), text: (B, L, D), text_bias: (B, 1, 1, L) or None."""
        q, k, v = self.to_q(x), self.to_k(text), self.to_v(text)
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        batch = x.shape[0]
        q = q.view(batch, -1, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, -1, self.heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, -1, self.heads, self.head_dim).transpose(1, 2)
        bias = None if text_bias is None else text_bias.to(q.dtype)  # autocast may have changed q's dtype
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.to_out[0](out.transpose(1, 2).flatten(2))
