"""A sharded parameter server's plain logic: which range of the flat parameter vector each
shard holds, and how the shards' states and snapshots make one.

Shards hold contiguous ranges of the flat vector balanced by size, so a big tensor is split
across shards as established parameter servers do (MXNet splits arrays above 1 M elements,
BytePS partitions into 4 MB chunks). Each shard is a whole `ParameterServer` over its range:
every push reaches every shard, so their clock tables see the same events, and a worker goes
on only when every shard allows it (the smallest `min_clock` of their replies): the
staleness bound then holds on every shard. Shard 0 hosts what exists once (the allocator,
the model's buffers) and decides the iteration budget.

A checkpoint holds one merged state, whatever the number of shards, so a run may resume with
another number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hetsync.core.wire import Reply, Snapshot
from hetsync.errors import ConfigError

# the server state's sections that hold one value per parameter, and their keys
SLICED_STATE = {"rule": ("momentum_buffer",), "compensation": ("mean_square",)}


def shard_ranges(params: int, shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous [lo, hi) ranges covering `params`, sizes differing by at most one."""
    if not 1 <= shards <= params:
        raise ConfigError(f"--server-shards {shards}: the model has {params} parameters")
    bounds = [params * k // shards for k in range(shards + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def merge_states(states: list[dict]) -> dict:
    """One server state from the shards' (shard 0's counters, every range's values)."""
    merged = dict(states[0])
    merged["weights"] = torch.cat([s["weights"] for s in states])
    for section in SLICED_STATE:
        if merged.get(section) is None:
            continue
        merged[section] = dict(states[0][section])
        for key in SLICED_STATE[section]:
            if key in merged[section]:
                parts = [s[section][key] for s in states]
                merged[section][key] = (None if any(p is None for p in parts)
                                        else torch.cat(parts))
    return merged


def split_state(state: dict, ranges: list[tuple[int, int]]) -> list[dict]:
    """A merged (or unsharded) state cut into one state per shard range."""
    out = []
    for k, (lo, hi) in enumerate(ranges):
        part: dict[str, Any] = dict(state, weights=state["weights"][lo:hi].clone())
        for section in SLICED_STATE:
            if state.get(section) is None:
                continue
            part[section] = dict(state[section])
            for key in SLICED_STATE[section]:
                if part[section].get(key) is not None:
                    part[section][key] = state[section][key][lo:hi].clone()
        if k:
            part["buffers"] = None  # the model's buffers live on shard 0
        out.append(part)
    return out


def merge_snapshots(parts: list[Snapshot]) -> Snapshot:
    """The shards' snapshots of the same moment as one (shard 0's counters and buffers)."""
    first = parts[0]
    return first._replace(weights=np.concatenate([p.weights for p in parts]))


def merge_replies(replies: list[Reply], landed: np.ndarray | None = None) -> Reply:
    """The shards' replies to one push as one: the weights of every range (`landed` if given:
    the vector the caller has already copied every range into), shard 0's counters and
    grant, and the smallest `min_clock`, so that a worker goes on only when every shard
    allows it."""
    if len(replies) == 1 and landed is None:
        return replies[0]
    first = replies[0]
    weights = np.concatenate([r.weights for r in replies]) if landed is None else landed
    return first._replace(weights=weights, min_clock=min(r.min_clock for r in replies),
                          waited_s=max(r.waited_s for r in replies))


class SnapshotZipper:
    """Pairs the shards' snapshots in the order they were taken: a shard that has taken more
    so far keeps the extra ones until the others catch up. Each shard snapshots at the same
    counts of applied gradients, so the i-th of each belongs together."""

    def __init__(self, shards: int):
        self.pending: list[list[Snapshot]] = [[] for _ in range(shards)]

    def add(self, per_shard: list[list[Snapshot]]) -> list[Snapshot]:
        """Queue the shards' new snapshots (one list per shard); returns, merged and in order,
        those every shard has now taken."""
        for queue, new in zip(self.pending, per_shard, strict=True):
            queue.extend(new)
        ready = min(len(q) for q in self.pending)
        out = [merge_snapshots([q[i] for q in self.pending]) for i in range(ready)]
        self.pending = [q[ready:] for q in self.pending]
        return out
