"""Provides ``RankLink``: the watch's side of a run under torch.distributed.

Every rank runs the same ``inspectr.watch(..., run=...)``. Rank 0 of the default group writes the
store; the other ranks send it their rows over torch.distributed itself, on a gloo group made at
the watch's start (CPU objects move under NCCL too, with a timeout of its own), at sampled steps
only: steps are in lockstep, so the gather is matched. No shared filesystem, no server.

Sharded parameters (DTensor: FSDP2 ``fully_shard``, HSDP on a 2-D mesh) are measured on the local
shard and their squares summed over the mesh dimensions that shard them only, never over the
replicas, so a module's figures are those of one process on the global batch. The per-step global
norm is the local one until the sampled step, where the pending steps' squares are reduced in one
collective: no collective on the other steps.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from inspectr.core.result import Finding
from inspectr.core.runs.rank_findings import fingerprint_desync
from inspectr.core.runs.store import Batch

TIMEOUT_ENV = "INSPECTR_RANK_TIMEOUT"  # seconds inspectr's own collectives wait for a lost rank


def distributed() -> bool:
    """True when this process is one of several ranks of an initialised default group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_dtensor(t: Any) -> bool:
    return hasattr(t, "device_mesh") and hasattr(t, "to_local")


def local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (no communication); any other tensor as it is."""
    return t.to_local() if is_dtensor(t) else t


def _ddp(model: nn.Module) -> nn.Module | None:
    from torch.nn.parallel import DistributedDataParallel
    return model.module if isinstance(model, DistributedDataParallel) else None


def _sum_over(t: torch.Tensor, groups: list[Any]) -> torch.Tensor:
    """``t`` summed over each process group in turn (on the GPU for NCCL groups), on the CPU."""
    for g in groups:
        on = t.to("cuda") if dist.get_backend(g) == "nccl" else t.cpu()
        dist.all_reduce(on, op=dist.ReduceOp.SUM, group=g)
        t = on.cpu()
    return t


class NoWriter:
    """What a rank other than 0 writes to: nothing (its rows go to rank 0 through ``RankLink``)."""

    failed: str | None = None

    def put(self, batch: Batch) -> None:
        pass

    def wait(self, timeout: float = 60.0) -> None:
        pass

    def close(self, timeout: float = 60.0) -> None:
        pass


class RankLink:
    """One rank's link to the others for one watch. Made in ``Watch.__enter__`` on every rank."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter], device: torch.device) -> None:
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.timeout = float(os.environ.get(TIMEOUT_ENV, "60"))
        self.group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=self.timeout))
        self.lost = False
        self.device = device
        self.info = (self.rank, int(os.environ.get("LOCAL_RANK", self.rank)), socket.gethostname(), os.getpid(),
                     self.world, str(device))
        # parameters sharded by DTensor, grouped by the process groups of the mesh dims that shard them
        self.shards: dict[tuple[int, ...], tuple[list[int], list[Any]]] = {}
        for i, p in enumerate(params):
            if is_dtensor(p):
                mesh = p.device_mesh
                groups = [mesh.get_group(d) for d, pl in enumerate(p.placements) if pl.is_shard()]
                if groups:
                    self.shards.setdefault(tuple(id(g) for g in groups), ([], groups))[0].append(i)
        self.sharded = torch.zeros(len(params), dtype=torch.bool)
        for idx, _ in self.shards.values():
            self.sharded[idx] = True
        # replicated tensors whose fingerprints must agree: DDP keeps parameters and buffers equal
        self.replicated: list[tuple[str, torch.Tensor]] = []
        if _ddp(model) is not None:  # names as the watch's module paths say them ("module.…")
            self.replicated = [*model.named_parameters(), *model.named_buffers()]
        else:  # HSDP: a shard is replicated over the mesh dims that do not shard it; ranks holding the
            # same shard (the same coordinates on the shard dims: "name@coords") must agree
            for name, p in model.named_parameters():
                if is_dtensor(p) and any(pl.is_replicate() for pl in p.placements):
                    coord = p.device_mesh.get_coordinate() or []
                    key = ",".join(str(coord[d]) for d, pl in enumerate(p.placements) if pl.is_shard())
                    self.replicated.append((f"{name}@{key}" if key else name, p))
        self.desync_seen: set[str] = set()
        self.local_sq: dict[int, tuple[float, float]] = {}  # step -> (sharded, replicated) local squares
        self.fwd_end: float | None = None
        self.root_out: Any = None
        self.handle = model.register_forward_hook(self._root_hook)
        self.peak = torch.cuda.max_memory_allocated if device.type == "cuda" else None

    def replay_target(self, model: nn.Module) -> nn.Module | None:
        """What the non-finite replay may run on this rank alone: DDP's inner module (its forward
        has no collective), None for a sharded model (its forward all-gathers)."""
        if self.shards:
            return None
        return _ddp(model) or model

    def close(self) -> None:
        self.handle.remove()
        self.root_out = None

    def _root_hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if torch.is_grad_enabled():  # the step's forward, not an evaluation inside the loop
            self.fwd_end = time.perf_counter()
            self.root_out = output  # a reference: read only at a non-finite step

    # ----------------------------------------------------------------- per step
    def work(self, t_step: float) -> tuple[float | None, int | None]:
        """This rank's own work in the step that ends: start to the end of its forward, and its
        CUDA peak memory so far."""
        w = None if self.fwd_end is None or self.fwd_end < t_step else self.fwd_end - t_step
        self.fwd_end = None
        self.root_out = None
        return w, (None if self.peak is None else int(self.peak()))

    def output_nonfinite(self) -> bool:
        from inspectr.core.values import iter_tensors
        out = self.root_out
        return out is not None and any(t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())
                                       for t in iter_tensors(out))

    def tag(self, finding: Finding, loss: Any) -> Finding:
        """The finding with this rank named (``detail.rank``; for ``nonfinite`` whether this rank's
        own loss or model output was non-finite, before any all-reduce)."""
        detail = dict(finding.detail, rank=self.rank)
        if finding.kind == "nonfinite":
            detail["loss_nonfinite"] = isinstance(loss, (float, torch.Tensor)) and not bool(
                torch.isfinite(torch.as_tensor(loss, dtype=torch.float64)))
            detail["output_nonfinite"] = self.output_nonfinite()
        message = finding.message if finding.message.startswith("rank ") else f"rank {self.rank}: {finding.message}"
        return Finding(finding.kind, finding.severity, finding.module, message, detail)

    # ----------------------------------------------------------------- sharded norms
    def reduce_squares(self, squares: torch.Tensor, present: list[int] | None = None) -> torch.Tensor:
        """Per-parameter squares (one per parameter, or per index in ``present``) with those of
        sharded parameters summed over their shard groups: whole-parameter squares."""
        if not self.shards:
            return squares
        out = squares.detach().to(torch.float64).clone()
        pos = {p: j for j, p in enumerate(present)} if present is not None else None
        for idx, groups in self.shards.values():
            where = [pos[i] for i in idx if i in pos] if pos is not None else idx
            if not where:  # no gradient here this step: the others hold none either (same model)
                continue
            sel = torch.tensor(where, dtype=torch.long, device=out.device)
            out.index_copy_(0, sel, _sum_over(out.index_select(0, sel), groups).to(out.device))
        return out

    def keep_step_norm(self, step: int, norms: torch.Tensor, present: list[int]) -> None:
        """Keep a step's local squares, sharded and not, to make its global norm at the sample."""
        if self.shards:
            sq = norms.detach().to("cpu", torch.float64).square()
            mask = self.sharded[torch.tensor(present, dtype=torch.long)] if present else self.sharded[:0]
            self.local_sq[step] = (float(sq[mask].sum()), float(sq[~mask].sum()))

    def global_norms(self) -> dict[int, float]:
        """The whole-model gradient norm of each step kept since the last sample, in one
        collective per shard group (all parameters of a model share one in FSDP2 and HSDP)."""
        if not self.local_sq:
            return {}
        steps = sorted(self.local_sq)
        sharded = _sum_over(torch.tensor([self.local_sq[s][0] for s in steps], dtype=torch.float64),
                            next(iter(self.shards.values()))[1])
        out = {s: float(sharded[j] + self.local_sq[s][1]) ** 0.5 for j, s in enumerate(steps)}
        self.local_sq = {}
        return out

    # ----------------------------------------------------------------- the rows
    def fingerprints(self) -> dict[str, tuple[float, float]]:
        with torch.no_grad():
            ts = [local(t).detach() for _, t in self.replicated]
            if not ts:
                return {}
            sums = torch.stack([t.sum(dtype=torch.float64) if t.is_floating_point() else t.double().sum()
                                for t in ts]).cpu().tolist()
            sqs = torch.stack([t.double().square().sum() for t in ts]).cpu().tolist()
        return {name: (a, b) for (name, _), a, b in zip(self.replicated, sums, sqs)}

    def exchange(self, step: int, batch: Batch) -> tuple[list[Batch], list[Finding]]:
        """Gather every rank's batch and fingerprints at rank 0 (a matched collective: call it on
        every rank at the same sampled step). Returns, on rank 0, the batches to write (its own first) and the
        cross-rank findings; on the other ranks, nothing to write. A lost rank ends the link:
        from then on each rank keeps only what it has (rank 0 still writes its own)."""
        batch.rank = self.rank
        if self.lost:
            batch.ranks.append(self.info)
            return ([batch] if self.rank == 0 else []), []
        payload = (batch, self.fingerprints(), self.info)
        got: list[Any] | None = [None] * self.world if self.rank == 0 else None
        try:
            dist.gather_object(payload, got, dst=0, group=self.group)
        except Exception as exc:
            self.lost = True
            batch.ranks.append(self.info)
            batch.events.append((step, "ranks", f"{type(exc).__name__}: {str(exc)[:300]} (a rank was lost: "
                                 "from here on each rank's rows stay on that rank; rank 0 records its own)"))
            return ([batch] if self.rank == 0 else []), []
        if self.rank != 0 or got is None:
            return [], []
        batches, prints = [], {}
        for b, fp, info in got:
            b.ranks.append(info)
            if b.rank != 0:  # the run's meta is rank 0's; a rank's own facts are its row in `ranks`
                b.meta = {}
            batches.append(b)
            if fp:
                prints[info[0]] = fp
        return batches, fingerprint_desync(step, prints, self.desync_seen)
