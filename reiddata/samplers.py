"""Identity-balanced P x K batches, for random access and for streams.

Two epoch rules for random access:

- :class:`RandomIdentitySampler`, **the official image one** (CLIP-ReID's and
  torchreid's ``RandomIdentitySampler``, CLIP-ReID ``datasets/sampler.py``): each
  identity's items are shuffled and cut into chunks of K (an identity with fewer than
  K items is first padded to K by drawing with replacement; a remainder under K is
  dropped); while at least P identities have chunks left, P of them are drawn at
  random and each gives its next chunk. Every item is visited at most once an epoch
  (bar the padding), identities in proportion to their items; the chunks left when
  fewer than P identities remain are dropped, as the official code drops them.
  Deterministic by ``(seed, epoch)``; under DDP rank r takes batches r, r + W, ...
  of the same plan, cut to an equal count on every rank (the official single-process
  sampler has no rank split). ``len`` is exact for the current epoch.
- :class:`ChunkIdentitySampler`, **the official video one** (VSLA-CLIP
  ``RandomIdentitySampler_Video``, ``datasets/sampler.py:125-178``): the same chunks of K,
  but all of them shuffled together and cut into batches of P chunks (an identity can
  give two chunks to one batch), the last incomplete batch dropped (``drop_last``). The
  epoch holds exactly sum over identities of (m - m % K) items, m = max(n, K), to whole
  batches: on G2A-VReID (about 2 tracklets an identity, K = 4) about twice the tracklets.
- :class:`IdentityBalancedSampler` (``sampler: balanced`` in a recipe), described below.

Epoch rule of :class:`IdentityBalancedSampler` (and how it differs from the two
samplers ReID code usually copies):

- **reiddata**: an epoch visits every identity once, in an order seeded by
  ``(seed, epoch)``; each identity gives K instances, drawn without replacement, or
  with replacement only when it has fewer than K. Identities fill batches of P; the
  last batch is completed with identities from the start of the order (so a batch
  always holds P distinct identities), and the batch count is rounded up to a
  multiple of the number of ranks the same way. Rank r takes batches r, r + W, ...:
  disjoint batches, the same number on every rank. ``len`` is exact.
- **torchreid** ``RandomIdentitySampler``: every image of every identity is cut
  into chunks of K (padded with replacement), and P identities with chunks left are
  drawn at random until fewer than P remain: an epoch covers about every image, so
  identities with many images appear in many batches; its ``len`` is an estimate.
  One process only.
- **fast-reid** ``NaiveIdentitySampler`` / ``BalancedIdentitySampler``: an infinite
  stream of P x K batches; ranks take interleaved slices of that stream, and the
  training length is counted in iterations, not epochs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from .errors import ReidDataError

__all__ = ["ChunkIdentitySampler", "IdentityBalancedSampler", "RandomIdentitySampler", "pk_batches"]


def rank_and_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """The given rank and world size, else torch.distributed's, else (0, 1)."""
    if rank is not None and world_size is not None:
        return rank, world_size
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # torch is optional for the sampler
        pass
    return 0, 1


class IdentityBalancedSampler:
    """Batches of P identities x K instances (a ``batch_sampler`` for DataLoader).

    ``pids``: the identity of each dataset index (e.g. ``ShardDataset.pids``); indices
    with a negative label can be left out by passing ``labels``. Call
    :meth:`set_epoch` before each epoch. Under torch.distributed the rank and world
    size are read from the process group unless given.
    """

    def __init__(
        self,
        pids: Sequence[int],
        *,
        p: int,
        k: int,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        pids = np.asarray(pids)
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0
        self._yielded, self._skip = 0, 0  # batches handed out this epoch; batches to skip on resume
        self.rank, self.world_size = rank_and_world(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise ReidDataError(f"rank {self.rank} is outside world size {self.world_size}")
        identities = np.unique(pids)
        if p < 1 or k < 1:
            raise ReidDataError(f"P and K must be at least 1, got P={p}, K={k}")
        if len(identities) < p:
            raise ReidDataError(f"P={p} identities per batch, but the data has only {len(identities)}")
        self.identities = identities
        order = np.argsort(pids, kind="stable")
        bounds = np.searchsorted(pids[order], identities, side="left").tolist() + [len(pids)]
        self.members = [order[bounds[i] : bounds[i + 1]] for i in range(len(identities))]
        batches = -(-len(identities) // p)
        self.batches_per_rank = -(-batches // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches_per_rank

    def state_dict(self) -> dict:
        """Where this rank stands: the epoch and the batches handed out in it (plain data).

        The count is the same on every rank, so rank 0's state resumes every rank.
        """
        return {
            "epoch": self.epoch,
            "batches_yielded": self._yielded,
            "p": self.p,
            "k": self.k,
            "seed": self.seed,
            "world_size": self.world_size,
            "identities": len(self.identities),
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume: the next ``iter`` starts after the batches ``state`` says were handed out."""
        mine = self.state_dict()
        for name in ("p", "k", "seed", "world_size", "identities"):
            if state.get(name) != mine[name]:
                raise ReidDataError(
                    f"cannot resume the sampler: saved with {name}={state.get(name)}, now {mine[name]} "
                    "(resume with the same data, batch shape, seed and number of ranks, or start afresh)"
                )
        self.epoch = int(state["epoch"])
        self._skip = int(state["batches_yielded"])

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.identities))
        needed = self.batches_per_rank * self.world_size * self.p
        cycle = np.concatenate([order] * (-(-needed // len(order))))[:needed]
        batches = []
        for b in range(needed // self.p):
            chosen = cycle[b * self.p : (b + 1) * self.p]
            if len(set(chosen.tolist())) < self.p:  # a wrap-around repeated an identity
                chosen = self._distinct(chosen, order)
            batch = []
            for identity in chosen:
                members = self.members[identity]
                replace = len(members) < self.k
                batch += rng.choice(members, size=self.k, replace=replace).tolist()
            batches.append(batch)
        return batches

    def _distinct(self, chosen: np.ndarray, order: np.ndarray) -> np.ndarray:
        out = list(dict.fromkeys(chosen.tolist()))
        for identity in order.tolist():
            if len(out) == self.p:
                break
            if identity not in out:
                out.append(identity)
        return np.asarray(out)

    def __iter__(self) -> Iterator[list[int]]:
        mine = self._all_batches()[self.rank :: self.world_size]
        self._yielded, self._skip = self._skip, 0
        for batch in mine[self._yielded :]:
            self._yielded += 1
            yield batch


class RandomIdentitySampler(IdentityBalancedSampler):
    """The official P x K sampler (see the module docstring); a ``batch_sampler``.

    Same interface as :class:`IdentityBalancedSampler` (``set_epoch``, ``state_dict``,
    resume mid-epoch); ``len`` is this epoch's batch count per rank, which varies a
    little from epoch to epoch (how many chunks are left over depends on the draw).
    """

    RULE = "official-image"

    def _chunks(self, rng: np.random.Generator) -> list[list[list[int]]]:
        """Per identity: its items shuffled (fewer than K: K drawn with replacement), in chunks of K."""
        chunks = []
        for members in self.members:
            items = members if len(members) >= self.k else rng.choice(members, size=self.k, replace=True)
            items = rng.permutation(items)
            whole = len(items) - len(items) % self.k
            chunks.append([items[i : i + self.k].tolist() for i in range(0, whole, self.k)])
        return chunks

    def _plan(self, rng: np.random.Generator) -> list[list[int]]:
        chunks = self._chunks(rng)
        available = [i for i, c in enumerate(chunks) if c]
        taken = [0] * len(chunks)
        batches = []
        while len(available) >= self.p:  # fewer than P identities with chunks left: the rest is dropped
            chosen = [available[i] for i in rng.choice(len(available), size=self.p, replace=False)]
            batch = []
            for identity in chosen:
                batch += chunks[identity][taken[identity]]
                taken[identity] += 1
            available = [i for i in available if taken[i] < len(chunks[i])]
            batches.append(batch)
        return batches

    def _all_batches(self) -> list[list[int]]:
        if getattr(self, "_cached", (None,))[0] != self.epoch:
            batches = self._plan(np.random.default_rng([self.seed, self.epoch, 1]))  # not the balanced stream
            usable = len(batches) - len(batches) % self.world_size  # equal counts on every rank
            self._cached = (self.epoch, batches[:usable])
        return self._cached[1]

    def __len__(self) -> int:
        return len(self._all_batches()) // self.world_size

    def state_dict(self) -> dict:
        return super().state_dict() | {"rule": self.RULE}

    def load_state_dict(self, state: dict) -> None:
        if state.get("rule") != self.RULE:
            raise ReidDataError(f"cannot resume: the saved sampler state is {state.get('rule')!r}, not {self.RULE!r}")
        super().load_state_dict(state)


class ChunkIdentitySampler(RandomIdentitySampler):
    """The official video P x K sampler (see the module docstring): every chunk of K of
    every identity, shuffled together, P chunks a batch, the incomplete last one dropped."""

    RULE = "official-video"

    def _plan(self, rng: np.random.Generator) -> list[list[int]]:
        chunks = [chunk for per_identity in self._chunks(rng) for chunk in per_identity]
        order = rng.permutation(len(chunks))
        whole = len(order) - len(order) % self.p
        return [sum((chunks[c] for c in order[b : b + self.p]), []) for b in range(0, whole, self.p)]


def pk_batches(
    samples: Iterable[dict],
    *,
    p: int,
    k: int,
    buffer: int = 4096,
    key: str = "pid",
) -> Iterator[list[dict]]:
    """P x K batches from a stream (data too large for random access), in bounded memory.

    Samples are held per identity; as soon as P identities have K samples each, those
    form a batch (the identities that filled up first). At most ``buffer`` samples are
    held: beyond it, the incomplete identity seen first loses its held samples (in a
    shuffled stream its other samples still come later). Samples of an identity that
    is already full are skipped until its batch goes out. Identities with fewer than K
    samples in the whole stream never form a batch here: use the map-style sampler
    when every identity must appear.
    """
    if p < 1 or k < 1 or buffer < p * k:
        raise ReidDataError(f"need P, K >= 1 and buffer >= P*K, got P={p}, K={k}, buffer={buffer}")
    held: OrderedDict[int, list[dict]] = OrderedDict()
    ready: list[int] = []
    count = 0
    for sample in samples:
        pid = sample[key]
        group = held.setdefault(pid, [])
        if len(group) >= k:
            continue  # already full: wait for its batch rather than grow
        group.append(sample)
        count += 1
        if len(group) == k:
            ready.append(pid)
        if len(ready) >= p:
            batch = []
            for done in ready[:p]:
                batch += held.pop(done)
            ready = ready[p:]
            count -= len(batch)
            yield batch
        while count > buffer:
            oldest = next(pid for pid in held if pid not in ready)
            count -= len(held.pop(oldest))
