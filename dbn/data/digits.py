"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside the wheel: works offline)."""

from __future__ import annotations

from dbn.data.base import TensorDataModule


class DigitsDataModule(TensorDataModule):
    """8x8 digits, pixels scaled from 0..16 to [0, 1]; a stratified, seeded test split.

    Args:
        test_fraction: share of the 1,797 images kept for the test split.
        **kwargs: batch_size, val_fraction, binarize, seed (see :class:`TensorDataModule`).
    """

    def __init__(self, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = float(test_fraction)

    def load(self) -> dict:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(
            x / 16.0, y, test_size=self.test_fraction, stratify=y, random_state=int(self.seed)
        )
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
