"""Deterministic, resumable mini-batch order.

The order of training examples is a pure function of (seed, batch counter): epoch ``e`` uses the
permutation ``randperm(N)`` drawn from a generator seeded with ``(seed, e)``, and batch ``b`` of the
run is slice ``b mod batches_per_epoch`` of epoch ``b // batches_per_epoch``'s permutation (the last
incomplete batch of each epoch is dropped so every batch has the same size). There is therefore no
sampler state to save: resuming at batch ``b`` reproduces exactly the batches an uninterrupted run
would have drawn.

Several processes (torchrun): ``batch_size`` is the *global* batch; rank ``r`` of ``W`` takes rows
``r·B/W … (r+1)·B/W`` of each global batch, so the ranks together see exactly the batches one
process would, and the order is still a pure function of the counter (and independent of W).
"""

from __future__ import annotations

from typing import Iterator, Optional, Union

import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from ..runtime.seeding import stream_generator


class BatchOrder:
    """Indices of batch ``b`` for a dataset of ``n`` items."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise ConfigError(f"train.batch_size={batch_size} is larger than the training set ({n} items)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = n // batch_size
        self._epoch = -1
        self._perm: torch.Tensor = torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = stream_generator("batch_order", self.seed, epoch)
            self._perm = torch.randperm(self.n, generator=g)
            self._epoch = epoch
        return self._perm

    def indices(self, batch: int) -> torch.Tensor:
        epoch, pos = divmod(batch, self.per_epoch)
        start = pos * self.batch_size
        return self._permutation(epoch)[start : start + self.batch_size]


class _Sampler(torch.utils.data.Sampler):
    def __init__(self, order: BatchOrder, start: int, rows: Optional[slice] = None) -> None:
        self.order, self.start, self.rows = order, start, rows

    def __iter__(self) -> Iterator[list]:
        b = self.start
        while True:
            idx = self.order.indices(b)
            yield (idx if self.rows is None else idx[self.rows]).tolist()
            b += 1


class BatchStream:
    """Yields real batches on ``device``, starting at batch counter ``start``.

    In-memory tensors (the common case: mnist5k, MNIST, toy data) are indexed directly on the
    device, which is far faster than a DataLoader; lazily-read Datasets go through a DataLoader
    with a batch sampler that follows the same deterministic order.
    """

    def __init__(
        self,
        data: Union[torch.Tensor, Dataset],
        batch_size: int,
        seed: int,
        device: torch.device,
        start: int = 0,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.order = BatchOrder(len(data), batch_size, seed)
        self.device = device
        self.counter = start
        if batch_size % world_size:
            raise ConfigError(f"train.batch_size={batch_size} (the global batch) is not divisible by the {world_size} processes")
        per = batch_size // world_size
        # this rank's rows of every global batch (None: all of them, the single-process path)
        self._rows = slice(rank * per, (rank + 1) * per) if world_size > 1 else None
        if torch.is_tensor(data):
            self._tensor = data.to(device)
            self._iter = None
        else:
            self._tensor = None
            loader = DataLoader(
                data,
                batch_sampler=_Sampler(self.order, start, self._rows),
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
                # its own generator: otherwise creating the iterator draws a worker seed from the
                # global RNG, which would make a resumed run's dropout masks differ
                generator=stream_generator("batch_loader", seed),
            )
            self._iter = iter(loader)

    def next(self) -> torch.Tensor:
        if self._tensor is not None:
            idx = self.order.indices(self.counter)
            if self._rows is not None:
                idx = idx[self._rows]
            batch = self._tensor[idx.to(self._tensor.device)]
        else:
            batch = next(self._iter).to(self.device, non_blocking=True)
        self.counter += 1
        return batch
