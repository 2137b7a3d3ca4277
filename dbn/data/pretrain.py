"""The data of one RBM layer during greedy pretraining: training batches and two monitoring sets."""

from __future__ import annotations

import lightning as L
from torch import Tensor
from torch.utils.data import DataLoader

from dbn.data.base import batch_loader, eval_loader


class PretrainDataModule(L.LightningDataModule):
    """Unlabelled data of one RBM layer: training batches, plus two monitoring sets.

    Validation serves the held-out data (loader 0) and a training subset of the
    same size (loader 1), so the free energies of both can be compared
    (Hinton 2010, section 6: a growing gap means overfitting). The tensors are
    moved to the trainer's device once, in ``setup``.

    With masks of missing values (1 = observed, the data zero-filled where 0) every
    loader serves ``(x, mask)`` batches, which :class:`~dbn.training.RBMModule` trains on.
    """

    def __init__(self, train_x: Tensor, val_x: Tensor | None, batch_size: int, monitor_size: int = 2000,
                 on_device: bool = True, train_mask: Tensor | None = None, val_mask: Tensor | None = None) -> None:
        super().__init__()
        for name, x, m in (("train_mask", train_x, train_mask), ("val_mask", val_x, val_mask)):
            if m is not None and (x is None or m.shape != x.shape):
                raise ValueError(f"{name} must have its data's shape {None if x is None else tuple(x.shape)}, "
                                 f"got {tuple(m.shape)}")
        self.train_x, self.val_x, self.batch_size, self.on_device = train_x, val_x, int(batch_size), on_device
        self.train_mask, self.val_mask = train_mask, val_mask
        n = min(monitor_size, len(train_x), len(val_x) if val_x is not None else monitor_size)
        self.monitor_train = train_x[:n]
        self.monitor_val = None if val_x is None else val_x[:n]
        self.monitor_train_mask = None if train_mask is None else train_mask[:n]
        self.monitor_val_mask = None if val_mask is None else val_mask[:n]

    def setup(self, stage: str | None = None) -> None:
        if self.on_device and self.trainer is not None:
            device = self.trainer.strategy.root_device
            names = ("train_x", "monitor_train", "monitor_val", "train_mask", "monitor_train_mask", "monitor_val_mask")
            for name in names:
                value = getattr(self, name)
                if value is not None:
                    setattr(self, name, value.to(device))

    def train_dataloader(self) -> DataLoader:
        return batch_loader(*_with_mask(self.train_x, self.train_mask), batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        if self.monitor_val is None:
            return []
        size = max(self.batch_size, 500)
        return [
            eval_loader(*_with_mask(self.monitor_val, self.monitor_val_mask), batch_size=size, trainer=self.trainer),
            eval_loader(*_with_mask(self.monitor_train, self.monitor_train_mask), batch_size=size, trainer=self.trainer),
        ]


def _with_mask(x: Tensor, mask: Tensor | None) -> tuple[Tensor, ...]:
    return (x,) if mask is None else (x, mask)
