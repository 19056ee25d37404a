"""Provides the attention models: a hand-written self-attention encoder and an nn.Transformer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sample_models._gallery import register


class SelfAttention(nn.Module):
    """Seed 002's multi-head self-attention with separate Q, K, V and output projections.

    Fixed vs the seed: an ``embed_dim`` not divisible by ``num_heads`` now fails at
    construction instead of inside ``view``.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        self.value = nn.Linear(embed_dim, embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, embed_dim = x.size()

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch_size, seq_len, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        attn = F.softmax(scores, dim=-1) @ v
        attn = attn.transpose(1, 2).contiguous().view(batch_size, seq_len, embed_dim)
        return self.out(attn)


class EncoderLayer(nn.Module):
    """Post-norm encoder layer: self-attention and a feed-forward net, each with a residual."""

    def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.attn = SelfAttention(embed_dim, num_heads)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dim, ff_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ff_dim, embed_dim),
        )
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attn(x)))
        return self.norm2(x + self.dropout(self.ffn(x)))


@register(
    "attention_encoder",
    "token classifier: embedding + 2 hand-written self-attention encoder layers",
    "002 PyTorch nn basics: SelfAttention",
)
class AttentionEncoder(nn.Module):
    """Seed 002's SelfAttention stacked into a small sequence classifier.

    Fixed vs the seed: the seed has only the attention layer; this adds token and position
    embeddings, FFN + LayerNorm sublayers, mean pooling and a classifier.
    """

    def __init__(self, vocab_size: int = 1000, max_len: int = 64, embed_dim: int = 64,
                 num_heads: int = 4, num_layers: int = 2, num_classes: int = 5) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.randn(1, max_len, embed_dim) * 0.02)
        self.layers = nn.Sequential(
            *(EncoderLayer(embed_dim, num_heads, 4 * embed_dim) for _ in range(num_layers))
        )
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos_embed[:, : tokens.shape[1]]
        x = self.layers(x)
        return self.classifier(x.mean(dim=1))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randint(0, self.vocab_size, (batch_size, 16))


class SinusoidalPositions(nn.Module):
    """Adds the fixed sine/cosine position encoding from "Attention Is All You Need"."""

    def __init__(self, d_model: int, max_len: int = 128) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * div_term)
        table[:, 1::2] = torch.cos(position * div_term)
        # Not persistent: it is a function of the shape, so it has no place in a checkpoint.
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]


@register(
    "transformer_seq2seq",
    "nn.Transformer translation model (d_model 64) over src and tgt token ids",
    "001 PyTorch classic models: nn.Transformer",
)
class TransformerSeq2Seq(nn.Module):
    """Seed 001's ``nn.Transformer`` turned into a token-to-token model.

    Fixed vs the seed: the seed feeds random float tensors straight into a 512-wide
    Transformer; this embeds token ids (scaled by sqrt(d_model)), adds positions, uses
    ``batch_first``, masks future target tokens and projects to vocabulary logits.
    """

    def __init__(self, src_vocab: int = 500, tgt_vocab: int = 500, d_model: int = 64,
                 nhead: int = 4, num_layers: int = 2, dim_feedforward: int = 128) -> None:
        super().__init__()
        self.src_vocab = src_vocab
        self.tgt_vocab = tgt_vocab
        self.d_model = d_model
        self.src_embed = nn.Embedding(src_vocab, d_model)
        self.tgt_embed = nn.Embedding(tgt_vocab, d_model)
        self.positions = SinusoidalPositions(d_model)
        self.transformer = nn.Transformer(
            d_model=d_model,
            nhead=nhead,
            num_encoder_layers=num_layers,
            num_decoder_layers=num_layers,
            dim_feedforward=dim_feedforward,
            dropout=0.1,
            batch_first=True,
        )
        self.generator = nn.Linear(d_model, tgt_vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        scale = math.sqrt(self.d_model)
        src_x = self.positions(self.src_embed(src) * scale)
        tgt_x = self.positions(self.tgt_embed(tgt) * scale)
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(
            tgt.shape[1], device=tgt.device
        )
        out = self.transformer(src_x, tgt_x, tgt_mask=tgt_mask, tgt_is_causal=True)
        return self.generator(out)

    def example_input(self, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        src = torch.randint(0, self.src_vocab, (batch_size, 12))
        tgt = torch.randint(0, self.tgt_vocab, (batch_size, 10))
        return src, tgt
