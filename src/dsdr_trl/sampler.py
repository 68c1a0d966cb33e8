"""A train sampler whose prompt order survives resuming from a checkpoint."""

from __future__ import annotations

import torch
from trl.trainer.utils import RepeatSampler

__all__ = ["EpochSeededRepeatSampler"]


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's `RepeatSampler` whose order in epoch e does not depend on how many epochs this process iterated before.

    `RepeatSampler` draws each epoch's permutation from one generator seeded once, so a run resumed from a checkpoint
    (a new sampler) replays epoch 0's order in every later epoch. `set_epoch(e)`, which the trainer calls before each
    epoch, reseeds the generator and skips e draws: an uninterrupted run gets exactly `RepeatSampler`'s orders, and a
    resumed run gets the same ones.
    """

    @classmethod
    def like(cls, sampler: RepeatSampler) -> EpochSeededRepeatSampler:
        """The same sampler as `sampler` (same data, repeats and seed), with reproducible epochs."""
        return cls(
            data_source=sampler.data_source,
            mini_repeat_count=sampler.mini_repeat_count,
            batch_size=sampler.batch_size,
            repeat_count=sampler.repeat_count,
            shuffle=sampler.shuffle,
            seed=sampler.seed,
        )

    def set_epoch(self, epoch: int) -> None:
        if not self.shuffle or self.seed is None:
            return  # an unseeded order cannot be reproduced anyway
        self.generator.manual_seed(self.seed)
        for _ in range(epoch):
            torch.randperm(self.num_samples, generator=self.generator)
