"""Provides the graph networks: a GCN over a sparse adjacency and a multi-head GAT."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sample_models._gallery import register

NODES_PER_GRAPH = 8


def random_graph_batch(num_graphs: int, nodes_per_graph: int = NODES_PER_GRAPH,
                       edge_prob: float = 0.3) -> torch.Tensor:
    """Return the dense 0/1 adjacency (self loops included) of ``num_graphs`` random graphs.

    The graphs are disjoint blocks on the diagonal, the usual way to batch graphs for a
    node-level model: no edge crosses from one graph to another.
    """
    n = num_graphs * nodes_per_graph
    graph_of = torch.arange(n) // nodes_per_graph
    same_graph = graph_of[:, None] == graph_of[None, :]
    upper = torch.triu(torch.rand(n, n) < edge_prob, diagonal=1) & same_graph
    adj = upper | upper.T | torch.eye(n, dtype=torch.bool)
    return adj.float()


def normalized_sparse_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """Return D^-1/2 A D^-1/2 as a coalesced sparse COO tensor (Kipf and Welling's GCN)."""
    inv_sqrt_degree = adj.sum(dim=1).rsqrt()
    norm = inv_sqrt_degree[:, None] * adj * inv_sqrt_degree[None, :]
    return norm.to_sparse_coo().coalesce()


class GraphConvolutionLayer(nn.Module):
    """Seed 000's graph convolution: transform features, then aggregate with ``sparse.mm``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        support = torch.mm(x, self.weight)
        return torch.sparse.mm(adj, support) + self.bias


@register(
    "gcn",
    "2-layer GCN, node classification; inputs (x, sparse normalised adjacency)",
    "000 advanced architectures: GCN",
)
class GCN(nn.Module):
    """Seed 000's GCN, node classification with log-softmax outputs.

    Fixed vs the seed: the seed draws the weight with ``randn`` and then overwrites it;
    it is now allocated empty and Xavier-initialised once. ``example_input(batch_size)``
    returns ``(x, adj)`` for ``batch_size`` disjoint random graphs of 8 nodes (32 nodes
    by default); ``adj`` is a sparse COO tensor, symmetrically normalised, with self loops.
    """

    def __init__(self, input_dim: int = 16, hidden_dim: int = 32, output_dim: int = 4,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.layers = nn.ModuleList([GraphConvolutionLayer(input_dim, hidden_dim)])
        for _ in range(num_layers - 2):
            self.layers.append(GraphConvolutionLayer(hidden_dim, hidden_dim))
        self.layers.append(GraphConvolutionLayer(hidden_dim, output_dim))
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.dropout(F.relu(layer(x, adj)))
        x = self.layers[-1](x, adj)
        return F.log_softmax(x, dim=1)

    def example_input(self, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        adj = normalized_sparse_adjacency(random_graph_batch(batch_size))
        x = torch.randn(adj.shape[0], self.input_dim)
        return x, adj


class GraphAttentionLayer(nn.Module):
    """Seed 000's graph attention layer, returning ``(features, attention)``.

    Fixed vs the seed: ``self.out_features`` is set (the seed reads it but never assigns
    it); the scores come from ``a1.h_i + a2.h_j`` broadcast, instead of materialising all
    N*N concatenated pairs; ELU is optional so the output layer can skip it.
    """

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.6,
                 alpha: float = 0.2, activate: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.dropout = dropout
        self.activate = activate
        self.W = nn.Parameter(torch.empty(in_features, out_features))
        self.a = nn.Parameter(torch.empty(2 * out_features, 1))
        nn.init.xavier_uniform_(self.W)
        nn.init.xavier_uniform_(self.a)
        self.leakyrelu = nn.LeakyReLU(alpha)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x @ self.W
        scores_src = h @ self.a[: self.out_features]
        scores_dst = h @ self.a[self.out_features:]
        e = self.leakyrelu(scores_src + scores_dst.T)
        # Self loops guarantee every row keeps one finite score, so softmax never sees a
        # row of -inf.
        attention = F.softmax(e.masked_fill(adj <= 0, float("-inf")), dim=1)
        attention = F.dropout(attention, self.dropout, training=self.training)
        h_prime = attention @ h
        if self.activate:
            h_prime = F.elu(h_prime)
        return h_prime, attention


@register(
    "gat",
    "graph attention network, 4 heads masked by a dense adjacency; inputs (x, adj)",
    "000 advanced architectures: GraphAttentionLayer",
)
class GAT(nn.Module):
    """Multi-head GAT made of seed 000's GraphAttentionLayer: four heads concatenated, then
    a single-head output layer.

    ``example_input(batch_size)`` returns ``(x, adj)`` for ``batch_size`` disjoint random
    graphs of 8 nodes; ``adj`` is a dense 0/1 matrix with self loops.
    """

    def __init__(self, input_dim: int = 16, hidden_dim: int = 8, num_heads: int = 4,
                 num_classes: int = 4, dropout: float = 0.6) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(
            GraphAttentionLayer(input_dim, hidden_dim, dropout) for _ in range(num_heads)
        )
        self.out_att = GraphAttentionLayer(hidden_dim * num_heads, num_classes, dropout,
                                           activate=False)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        x = self.dropout(x)
        x = torch.cat([head(x, adj)[0] for head in self.heads], dim=1)
        x = self.dropout(x)
        logits, _ = self.out_att(x, adj)
        return F.log_softmax(logits, dim=1)

    def example_input(self, batch_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
        adj = random_graph_batch(batch_size)
        x = torch.randn(adj.shape[0], self.input_dim)
        return x, adj
