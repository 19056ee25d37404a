"""Provides the recurrent models: an LSTM classifier, a GRU tagger and an LSTM seq2seq."""

from __future__ import annotations

import torch
from torch import nn

from sample_models._gallery import register


@register(
    "lstm_classifier",
    "embedding + 2-layer batch-first LSTM, classifies from the final hidden state",
    "002 PyTorch nn basics: nn.LSTM(10, 20, 2)",
)
class LSTMClassifier(nn.Module):
    """A sequence classifier around seed 002's stacked LSTM.

    Fixed vs the seed: the seed builds a bare ``nn.LSTM(10, 20, 2)`` in the default
    (seq, batch, feature) layout; this one is ``batch_first``, reads token ids through an
    embedding and classifies from ``h_n`` of the LSTM's ``(output, (h_n, c_n))`` tuple.
    """

    def __init__(self, vocab_size: int = 1000, embed_dim: int = 32, hidden_size: int = 64,
                 num_layers: int = 2, num_classes: int = 4) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True, dropout=0.1)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(self.embed(tokens))
        return self.classifier(h_n[-1])

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randint(0, self.vocab_size, (batch_size, 20))


@register(
    "gru_tagger",
    "embedding + bidirectional GRU, one tag per token",
    "002 PyTorch nn basics: recurrent layers",
)
class GRUTagger(nn.Module):
    """A per-token tagger (e.g. part of speech) on a bidirectional GRU.

    Seed 002 lists recurrent layers only as one-liners; this is the GRU counterpart of its
    LSTM, writing a tag distribution for every position.
    """

    def __init__(self, vocab_size: int = 1000, embed_dim: int = 32, hidden_size: int = 48,
                 num_tags: int = 12) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden_size, batch_first=True, bidirectional=True)
        self.tagger = nn.Linear(2 * hidden_size, num_tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embed(tokens))
        return self.tagger(states)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randint(0, self.vocab_size, (batch_size, 15))


@register(
    "seq2seq_lstm",
    "encoder-decoder LSTM over float sequences, two inputs (src, tgt)",
    "002 PyTorch nn basics: Seq2Seq",
)
class Seq2Seq(nn.Module):
    """Seed 002's Seq2Seq, teacher-forced: the decoder starts from the encoder's (h, c).

    Kept as in the seed apart from small default sizes so the gallery builds it with no
    arguments.
    """

    def __init__(self, input_size: int = 16, hidden_size: int = 64, output_size: int = 8,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = output_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.encoder = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True,
                               dropout=0.1)
        self.decoder = nn.LSTM(output_size, hidden_size, num_layers, batch_first=True,
                               dropout=0.1)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        _, (hidden, cell) = self.encoder(src)
        decoder_output, _ = self.decoder(tgt, (hidden, cell))
        return self.out(decoder_output)

    def example_input(self, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        src = torch.randn(batch_size, 12, self.input_size)
        tgt = torch.randn(batch_size, 9, self.output_size)
        return src, tgt
