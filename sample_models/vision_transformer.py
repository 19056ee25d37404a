"""Provides a tiny Vision Transformer whose attention layers return their weights as tuples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops.layers.torch import Rearrange
from torch import nn

from sample_models._gallery import register


class PatchEmbedding(nn.Module):
    """Seed 000's patch embedding: an einops ``Rearrange`` layer cuts patches, a Linear embeds."""

    def __init__(self, img_size: int = 32, patch_size: int = 8, in_channels: int = 3,
                 embed_dim: int = 64) -> None:
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.projection = nn.Sequential(
            Rearrange("b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size),
            nn.Linear(patch_size * patch_size * in_channels, embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention returning ``(output, attention_weights)``.

    Seed 000 uses this class without defining it; this follows seed 002's SelfAttention with
    a fused QKV projection and dropout on the weights.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        weights = F.softmax(q @ k.transpose(-2, -1) * self.head_dim**-0.5, dim=-1)
        out = self.attn_drop(weights) @ v
        out = out.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out), weights


class TransformerBlock(nn.Module):
    """Seed 000's pre-norm transformer block, returning ``(x, attention_weights)`` as written."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = MultiHeadSelfAttention(embed_dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        mlp_hidden_dim = int(embed_dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, mlp_hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_hidden_dim, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attn_out, attn_weights = self.attn(self.norm1(x))
        x = x + attn_out
        x = x + self.mlp(self.norm2(x))
        return x, attn_weights


@register(
    "vit_tiny",
    "tiny ViT: einops patch embedding, class token, 4 blocks returning attention, 3x32x32",
    "000 advanced architectures: ViT PatchEmbedding and TransformerBlock",
)
class ViTTiny(nn.Module):
    """A tiny ViT assembled from seed 000's PatchEmbedding and TransformerBlock.

    Fixed vs the seed: the seed has no model around the blocks and no attention class; this
    adds the attention, a class token, learned position embeddings and a head. ``forward``
    returns the logits; blocks return ``(x, weights)`` tuples, so the inspector sees nested
    outputs inside the model.
    """

    def __init__(self, img_size: int = 32, patch_size: int = 8, in_channels: int = 3,
                 embed_dim: int = 64, depth: int = 4, num_heads: int = 4,
                 num_classes: int = 10) -> None:
        super().__init__()
        self.img_size = img_size
        self.in_channels = in_channels
        self.patch_embed = PatchEmbedding(img_size, patch_size, in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(TransformerBlock(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.norm(x[:, 0]))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, self.in_channels, self.img_size, self.img_size)
