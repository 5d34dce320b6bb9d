"""The building blocks of the DC-AE autoencoder (Chen et al., "Deep Compression Autoencoder", 2024).

Parameter names follow diffusers' AutoencoderDC so its state dicts load unchanged.

- ResBlock: conv3x3 → act → conv3x3 → norm, plus the input (purely local).
- EfficientViTBlock: multi-scale ReLU linear attention ("LiteMLA") then a gated inverted-bottleneck conv
  (GLUMBConv). The attention is the only non-local operation in the network: every output pixel sees
  the sums Σ v kᵀ and Σ k over the whole feature map.
- DownBlock / UpBlock: ×2 resampling with a parameter-free space-to-channel shortcut, so each stage learns
  a residual on top of pixel-(un)shuffled features (the paper's "residual autoencoding").

All blocks take and return (B, C, H, W) tensors; they run fastest channels-last, where moving channels
to the last dimension (for the linear layers and norms) is a free view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU, "swish": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "mish": nn.Mish,
}
NORMS = ("rms_norm", "batch_norm")
BLOCK_TYPES = ("ResBlock", "EfficientViTBlock")
NORM_EPS = 1e-5


class ChannelRMSNorm(nn.Module):
    """RMSNorm over the channel dimension of an image tensor, with a bias, computed in fp32."""

    def __init__(self, channels: int, eps: float = NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.movedim(1, -1).float()
        y = F.rms_norm(y, y.shape[-1:], self.weight.float(), self.eps) + self.bias.float()
        return y.to(x.dtype).movedim(-1, 1)


def make_norm(norm_type: str, channels: int) -> nn.Module:
    # BatchNorm runs with its stored statistics (inference only), so it is a per-channel affine map.
    return ChannelRMSNorm(channels) if norm_type == "rms_norm" else nn.BatchNorm2d(channels, eps=NORM_EPS)


def repeat_channels(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """(B, C, H, W) → (B, C·repeats, H, W), each channel repeated `repeats` times in place."""
    return x.movedim(1, -1).repeat_interleave(repeats, dim=-1).movedim(-1, 1)


def average_channel_groups(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, C, H, W) → (B, channels, H, W), the mean of each run of C / channels consecutive channels."""
    return x.movedim(1, -1).unflatten(-1, (channels, -1)).mean(-1).movedim(-1, 1)


class ResBlock(nn.Module):
    def __init__(self, channels: int, norm_type: str, act_fn: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.nonlinearity = ACTIVATIONS[act_fn]()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = make_norm(norm_type, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv2(self.nonlinearity(self.conv1(x))))

    @staticmethod
    def input_margin(output_margin: int) -> int:
        """Context (pixels per side) the input needs for `output_margin` of output context: two 3×3 convs."""
        return output_margin + 2


class MultiscaleProjection(nn.Module):
    """Aggregates q, k, v over a k×k neighbourhood: a depthwise conv, then a 1×1 conv within each head."""

    def __init__(self, channels: int, groups: int, kernel_size: int) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False)
        self.proj_out = nn.Conv2d(channels, channels, 1, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.proj_in(x))


class MultiscaleLinearAttention(nn.Module):
    """LiteMLA: ReLU linear attention over all pixels, on the plain q, k, v and on each multi-scale copy.

    The 3·inner projected channels are read as groups of 3·head_dim, each group one head's (q, k, v) — the
    layout of the original fused qkv conv, which diffusers split into to_q / to_k / to_v by thirds. The
    multi-scale copies add more such heads. Per head: o_n = Σ_m v_m (k_m·q_n) / (Σ_m k_m·q_n + eps), in fp32.
    """

    def __init__(self, channels: int, head_dim: int, kernel_sizes: tuple[int, ...], norm_type: str) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.eps = 1e-15
        heads = channels // head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(channels, inner, bias=False)
        self.to_k = nn.Linear(channels, inner, bias=False)
        self.to_v = nn.Linear(channels, inner, bias=False)
        self.to_qkv_multiscale = nn.ModuleList(MultiscaleProjection(3 * inner, 3 * heads, k) for k in kernel_sizes)
        self.to_out = nn.Linear(inner * (1 + len(kernel_sizes)), channels, bias=False)
        self.norm_out = make_norm(norm_type, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One matmul for q, k and v; the weight concat is tiny next to the activations.
        qkv_weight = torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight])
        qkv = F.linear(x.movedim(1, -1), qkv_weight).movedim(-1, 1)
        scales = [qkv, *(proj(qkv) for proj in self.to_qkv_multiscale)]
        out = self.to_out(torch.cat([self._attend(s) for s in scales], dim=-1)).movedim(-1, 1)
        return x + self.norm_out(out)

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(B, 3·inner, H, W) projected features → (B, H, W, inner) attention output."""
        b, c, h, w = qkv.shape
        tokens = qkv.movedim(1, -1).reshape(b, h * w, c // (3 * self.head_dim), 3 * self.head_dim)
        q, k, v = tokens.chunk(3, dim=-1)  # (B, N, heads, head_dim) each
        q, k, v = F.relu(q).float(), F.relu(k).float(), v.float()
        # Linear attention: the (d × d) sums over all N pixels replace the N × N score matrix. (diffusers
        # switches to the N × N form for maps of ≤ head_dim pixels: the same sums, reordered.)
        kv = torch.einsum("bngi,bngj->bgij", v, k)
        numerator = torch.einsum("bgij,bngj->bngi", kv, q)
        denominator = torch.einsum("bgj,bngj->bng", k.sum(dim=1), q)
        out = numerator / (denominator.unsqueeze(-1) + self.eps)
        return out.to(qkv.dtype).reshape(b, h, w, -1)


class GLUMBConv(nn.Module):
    """Inverted bottleneck (×4) with a SiLU-gated depthwise 3×3 conv, RMS-normed, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = 4 * channels
        self.conv_inverted = nn.Conv2d(channels, 2 * hidden, 1)
        self.conv_depth = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.conv_point = nn.Conv2d(hidden, channels, 1, bias=False)
        self.norm = ChannelRMSNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place SiLUs at inference: the 8×-wide intermediates dominate the decoder's memory at low
        # resolution. Training needs the inputs for the backward pass, so it keeps them.
        inplace = not torch.is_grad_enabled()
        hidden, gate = self.conv_depth(F.silu(self.conv_inverted(x), inplace=inplace)).chunk(2, dim=1)
        return x + self.norm(self.conv_point(hidden * F.silu(gate, inplace=inplace)))


class EfficientViTBlock(nn.Module):
    def __init__(self, channels: int, head_dim: int, kernel_sizes: tuple[int, ...], norm_type: str) -> None:
        super().__init__()
        self.attn = MultiscaleLinearAttention(channels, head_dim, kernel_sizes, norm_type)
        self.conv_out = GLUMBConv(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.attn(x))


def make_block(
    block_type: str, channels: int, head_dim: int, kernel_sizes: tuple[int, ...], norm_type: str, act_fn: str
) -> nn.Module:
    if block_type == "ResBlock":
        return ResBlock(channels, norm_type, act_fn)
    return EfficientViTBlock(channels, head_dim, kernel_sizes, norm_type)


class DownBlock(nn.Module):
    """×2 downsampling: a stride-2 conv, or a conv followed by pixel-unshuffle; the shortcut pixel-unshuffles
    the input and averages channel groups down to the output width."""

    def __init__(self, in_channels: int, out_channels: int, pixel_unshuffle: bool, shortcut: bool) -> None:
        super().__init__()
        self.pixel_unshuffle = pixel_unshuffle
        self.shortcut = shortcut
        if pixel_unshuffle:
            self.conv = nn.Conv2d(in_channels, out_channels // 4, 3, padding=1)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.pixel_unshuffle:
            out = F.pixel_unshuffle(out, 2)
        if self.shortcut:
            out = out + average_channel_groups(F.pixel_unshuffle(x, 2), out.shape[1])
        return out


class UpBlock(nn.Module):
    """×2 upsampling: nearest-neighbour interpolation then a conv, or a conv followed by pixel-shuffle; the
    shortcut repeats channels up to 4× the output width and pixel-shuffles them."""

    def __init__(self, in_channels: int, out_channels: int, interpolate: bool, shortcut: bool) -> None:
        super().__init__()
        self.interpolate = interpolate
        self.shortcut = shortcut
        self.conv = nn.Conv2d(in_channels, out_channels if interpolate else 4 * out_channels, 3, padding=1)

    def input_margin(self, output_margin: int) -> int:
        """Context (input pixels per side) for `output_margin` output pixels: ×2 halves it, rounding up; the
        3×3 conv adds one pixel, at the output resolution when interpolating, else at the input's."""
        if self.interpolate:
            return -(-(output_margin + 1) // 2)
        return -(-output_margin // 2) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolate:
            out = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        else:
            out = F.pixel_shuffle(self.conv(x), 2)
        if self.shortcut:
            out = out + F.pixel_shuffle(repeat_channels(x, 4 * out.shape[1] // x.shape[1]), 2)
        return out
