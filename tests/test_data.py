"""The data modules on tiny files written here: idx parsing, splits, scaling, binarisation and batching.

Nothing is downloaded: idx files are written into ``tmp_path`` with real headers, and torchvision
is replaced by a stub wherever a module could reach for it.
"""

from __future__ import annotations

import gzip
import math
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from dbn.data import (
    ArraysDataModule,
    DataError,
    DigitsDataModule,
    IdxDataModule,
    PretrainDataModule,
    batch_loader,
    read_idx,
    scale_pixels,
)
from dbn.data.base import TensorBatches

# idx type code and the big-endian dtype its data is stored in (LeCun's format)
IDX_TYPES = {np.dtype(np.uint8): (0x08, "u1"), np.dtype(np.int16): (0x0B, ">i2"), np.dtype(np.float32): (0x0D, ">f4")}
TORCHVISION_DIR = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
N_TRAIN, N_TEST = 30, 10


# helpers ------------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an idx file: magic 0x0000TTNN, NN big-endian int32 dims, big-endian data; gzip if .gz."""
    code, stored = IDX_TYPES[array.dtype]
    raw = struct.pack(">i", (code << 8) | array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    raw += array.astype(stored).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def mnist_like(n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images; pixel (0, 0) holds the image's index so rows can be traced through a split."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)
        images[:, 0, 1], images[:, 0, 2] = 0, 255  # both ends of the pixel range
        out[f"images_{split}"], out[f"labels_{split}"] = images, (np.arange(n) % 10).astype(np.uint8)
    return out


def write_mnist(root: Path, arrays: dict[str, np.ndarray], name: str = "mnist", layout: str = "flat",
                gz: bool = False, skip: tuple[str, ...] = ()) -> None:
    """The four idx files under their official names, flat in root or in torchvision's root/<Name>/raw."""
    folder = root if layout == "flat" else root / TORCHVISION_DIR[name] / "raw"
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for kind, ndim in (("images", 3), ("labels", 1)):
            stem = f"{prefix}-{kind}-idx{ndim}-ubyte"
            if stem not in skip:
                write_idx(folder / (stem + (".gz" if gz else "")), arrays[f"{kind}_{split}"])


def image_ids(x: torch.Tensor) -> np.ndarray:
    """The index each flattened image carries in pixel (0, 0)."""
    return np.rint(x[:, 0].numpy() * 255).astype(int)


def scaled(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255.0).flatten(1)


def arrays_module(tmp_path: Path, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> ArraysDataModule:
    np.save(tmp_path / "x.npy", x)
    if y is not None:
        np.save(tmp_path / "y.npy", y)
        kwargs["labels"] = str(tmp_path / "y.npy")
    return ArraysDataModule(features=str(tmp_path / "x.npy"), **kwargs)


# read_idx ------------------------------------------------------------------------------------------------
IDX_ARRAYS = {
    "uint8-images": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10,
    "uint8-labels": np.array([7, 0, 255, 3], dtype=np.uint8),
    "int16": np.array([[-300, 2], [32767, -32768]], dtype=np.int16),
    "float32": np.array([[0.5, -1.25, 3e7]], dtype=np.float32),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("name", list(IDX_ARRAYS))
def test_read_idx_round_trips_shape_dtype_and_values(tmp_path, name, gz):
    array = IDX_ARRAYS[name]
    got = read_idx(write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array))
    assert got.shape == array.shape
    assert got.dtype == np.dtype(IDX_TYPES[array.dtype][1])
    np.testing.assert_array_equal(got, array)


def test_written_idx_files_carry_the_official_magic(tmp_path):
    images = write_idx(tmp_path / "i", np.zeros((30, 28, 28), np.uint8)).read_bytes()
    labels = gzip.decompress(write_idx(tmp_path / "l.gz", np.zeros(30, np.uint8)).read_bytes())
    assert images[:16] == bytes.fromhex("00000803" "0000001e" "0000001c" "0000001c")
    assert labels[:8] == bytes.fromhex("00000801" "0000001e") and len(labels) == 8 + 30


@pytest.mark.parametrize("magic", ["12340803", "00000703", "01000801"])
def test_read_idx_rejects_a_bad_magic_number(tmp_path, magic):
    path = tmp_path / "bad"
    path.write_bytes(bytes.fromhex(magic) + struct.pack(">3i", 1, 2, 2) + bytes(4))
    with pytest.raises(DataError, match=rf"bad.*not an idx file.*{magic}"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_rejects_a_truncated_body_with_the_sizes(tmp_path, gz):
    path = write_idx(tmp_path / ("t.gz" if gz else "t"), np.zeros((3, 28, 28), np.uint8))
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    raw = raw[:-100]  # the header still promises 3x28x28 bytes
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match=r"truncated or corrupt.*\(3, 28, 28\).*2352 bytes.*found 2252"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_header(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(bytes.fromhex("00000803") + struct.pack(">i", 30))  # 3 dims promised, 1 given
    with pytest.raises(DataError, match=r"truncated.*3 dims"):
        read_idx(path)


def test_read_idx_rejects_a_cut_off_or_fake_gzip_file(tmp_path):
    path = write_idx(tmp_path / "cut.gz", np.arange(200, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])  # the stream ends before its end-of-stream marker
    with pytest.raises(DataError, match=r"cut\.gz.*corrupt or truncated"):
        read_idx(path)
    fake = write_idx(tmp_path / "fake.gz", np.arange(200, dtype=np.uint8))
    fake.write_bytes(gzip.decompress(fake.read_bytes()))  # .gz suffix, plain contents
    with pytest.raises(DataError, match=r"fake\.gz.*corrupt or truncated"):
        read_idx(fake)


def test_scale_pixels_gives_numpy_float32_division_bit_for_bit():
    every_byte = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    expected = every_byte.astype(np.float32) / 255.0
    got = scale_pixels(every_byte)
    assert got.dtype == torch.float32 and np.array_equal(got.numpy(), expected)
    assert float(got.min()) == 0.0 and float(got.max()) == 1.0
    # idx files of other types (big-endian ones included, which torch.from_numpy refuses) scale the same way
    wide = np.arange(256, dtype=">i2").reshape(1, 16, 16)
    assert np.array_equal(scale_pixels(wide).numpy(), expected)


# IdxDataModule ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, layout, gz",
    [("mnist", "flat", False), ("mnist", "torchvision", True), ("fashion_mnist", "torchvision", False),
     ("fashion_mnist", "flat", True)],
)
def test_idx_module_scales_flattens_and_keeps_the_official_test_split(tmp_path, name, layout, gz):
    arrays = mnist_like()
    write_mnist(tmp_path, arrays, name=name, layout=layout, gz=gz)
    dm = IdxDataModule(name=name, root=str(tmp_path), val_fraction=0.1)
    dm.setup()
    for x in (dm.train_x, dm.val_x, dm.test_x):
        assert x.dtype == torch.float32 and x.shape[1] == 784
    both = torch.cat([dm.train_x, dm.val_x])
    assert float(both.min()) == 0.0 and float(both.max()) == 1.0
    assert dm.train_y.dtype == dm.val_y.dtype == dm.test_y.dtype == torch.int64
    # the test split is the source's own, in file order
    assert torch.equal(dm.test_x, scaled(arrays["images_test"]))
    assert torch.equal(dm.test_y, torch.from_numpy(arrays["labels_test"]).long())
    assert dm.describe() == {"name": "IdxDataModule", "n_features": 784, "n_classes": 10,
                             "n_train": 27, "n_val": 3, "n_test": N_TEST}


@pytest.mark.parametrize("val_fraction", [0.1, 0.25, 0.5])
def test_idx_validation_split_partitions_the_training_set(tmp_path, val_fraction):
    arrays = mnist_like()
    write_mnist(tmp_path, arrays)
    dm = IdxDataModule(name="mnist", root=str(tmp_path), val_fraction=val_fraction, seed=3)
    dm.setup()
    n_val = round(val_fraction * N_TRAIN)
    assert len(dm.val_x) == n_val and len(dm.train_x) == N_TRAIN - n_val
    train_ids, val_ids = image_ids(dm.train_x), image_ids(dm.val_x)
    assert not set(train_ids) & set(val_ids)
    assert sorted([*train_ids, *val_ids]) == list(range(N_TRAIN))
    # whole rows (and their labels) moved together, not just the id pixel
    original = scaled(arrays["images_train"])
    labels = torch.from_numpy(arrays["labels_train"]).long()
    assert torch.equal(dm.train_x, original[train_ids]) and torch.equal(dm.val_x, original[val_ids])
    assert torch.equal(dm.train_y, labels[train_ids]) and torch.equal(dm.val_y, labels[val_ids])


def test_idx_split_is_reproducible_with_the_seed_and_changes_with_another(tmp_path):
    write_mnist(tmp_path, mnist_like())

    def val_ids(seed):
        dm = IdxDataModule(name="mnist", root=str(tmp_path), val_fraction=0.2, seed=seed)
        dm.setup()
        return image_ids(dm.val_x).tolist()

    assert val_ids(0) == val_ids(0)
    assert val_ids(0) != val_ids(1)


def test_idx_limit_keeps_the_first_training_images_only(tmp_path):
    arrays = mnist_like()
    write_mnist(tmp_path, arrays)
    dm = IdxDataModule(name="mnist", root=str(tmp_path), limit=12, val_fraction=0.25)
    dm.setup()
    assert (len(dm.train_x), len(dm.val_x), len(dm.test_x)) == (9, 3, N_TEST)
    assert sorted([*image_ids(dm.train_x), *image_ids(dm.val_x)]) == list(range(12))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_missing_files_name_the_settings_that_fix_it(tmp_path, name):
    write_mnist(tmp_path, mnist_like(), name=name, layout="torchvision", skip=("t10k-labels-idx1-ubyte",))
    dm = IdxDataModule(name=name, root=str(tmp_path))
    with pytest.raises(DataError) as err:
        dm.setup()
    message = str(err.value)
    assert "data.root" in message and "data.download" in message
    assert "labels_test" in message and "images_train" not in message  # only the missing file is named
    assert str(tmp_path / TORCHVISION_DIR[name] / "raw") in message


def test_idx_rejects_an_unknown_data_set():
    with pytest.raises(DataError, match="unknown idx data set 'cifar'.*fashion_mnist.*mnist"):
        IdxDataModule(name="cifar")


@pytest.fixture
def no_torchvision(monkeypatch):
    """torchvision's MNIST classes replaced by ones that fail the test if they are ever built."""
    import torchvision.datasets

    def refuse(*args, **kwargs):
        raise AssertionError("torchvision was called, but nothing needed downloading")

    monkeypatch.setattr(torchvision.datasets, "MNIST", refuse)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", refuse)


def test_idx_without_download_never_calls_torchvision(tmp_path, no_torchvision):
    dm = IdxDataModule(name="mnist", root=str(tmp_path / "empty"), download=False)
    dm.prepare_data()
    with pytest.raises(DataError, match="data.download"):
        dm.setup()


def test_idx_with_download_and_files_present_does_not_call_torchvision(tmp_path, no_torchvision):
    write_mnist(tmp_path, mnist_like(), layout="torchvision", gz=True)
    dm = IdxDataModule(name="mnist", root=str(tmp_path), download=True)
    dm.prepare_data()
    dm.setup()
    assert len(dm.test_x) == N_TEST


def test_idx_download_asks_torchvision_for_both_splits_in_root(tmp_path, monkeypatch):
    import torchvision.datasets

    arrays, calls = mnist_like(), []

    def fake_mnist(root, train, download):
        # what torchvision leaves behind: the (gz) files of one split in root/MNIST/raw
        calls.append((root, train, download))
        other = "t10k" if train else "train"
        skip = (f"{other}-images-idx3-ubyte", f"{other}-labels-idx1-ubyte")
        write_mnist(Path(root), arrays, layout="torchvision", gz=True, skip=skip)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    dm = IdxDataModule(name="mnist", root=str(tmp_path), download=True)
    dm.setup()
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert torch.equal(dm.test_x, scaled(arrays["images_test"]))


def test_idx_download_that_fails_offline_is_a_data_error_naming_the_way_out(tmp_path, monkeypatch):
    """torchvision raises RuntimeError("Error downloading ...") with every mirror's URLError when offline."""
    import torchvision.datasets

    def offline_mnist(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://ossci-datasets.s3.amazonaws"
                           ".com/mnist/, got:\n<urlopen error [Errno -2] Name or service not known>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline_mnist)
    dm = IdxDataModule(name="mnist", root=str(tmp_path), download=True)
    with pytest.raises(DataError, match=r"could not fetch .*Name or service not known.*data.root=FOLDER data.download=false"):
        dm.prepare_data()


# DigitsDataModule -----------------------------------------------------------------------------------------
def test_digits_module_holds_all_1797_images_with_a_stratified_test_split():
    dm = DigitsDataModule(test_fraction=0.2, val_fraction=0.1, seed=0)
    dm.setup()
    assert len(dm.train_x) + len(dm.val_x) + len(dm.test_x) == 1797
    assert len(dm.test_x) == math.ceil(0.2 * 1797)  # scikit-learn rounds the test share up
    assert len(dm.val_x) == round(0.1 * (1797 - 360))
    x = torch.cat([dm.train_x, dm.val_x, dm.test_x])
    assert x.shape[1] == 64 == dm.n_features and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # 0..16 grey levels scaled by 1/16
    assert torch.equal(x * 16, (x * 16).round())
    assert dm.n_classes == 10
    # stratified: each class is in the test split in proportion, to within one image
    y_all = torch.cat([dm.train_y, dm.val_y, dm.test_y])
    counts_all, counts_test = torch.bincount(y_all, minlength=10), torch.bincount(dm.test_y, minlength=10)
    expected = counts_all.double() * len(dm.test_y) / len(y_all)
    assert torch.all((counts_test - expected).abs() <= 1)


# ArraysDataModule -----------------------------------------------------------------------------------------
def id_features(n: int, d: int = 4, seed: int = 0) -> np.ndarray:
    """Random features whose column 0 is the row index, so rows can be traced through a split."""
    x = np.random.default_rng(seed).random((n, d))
    x[:, 0] = np.arange(n)
    return x


def save_as(path: Path, array: np.ndarray) -> str:
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.suffix == ".npz":
        np.savez(path, only=array)
    else:
        torch.save(torch.from_numpy(array), path)
    return str(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt"])
def test_arrays_read_npy_npz_and_pt_alike(tmp_path, suffix):
    x, y = id_features(20), np.arange(20) % 2
    x_test, y_test = id_features(6, seed=1), np.array([0, 1, 1, 0, 1, 0])
    dm = ArraysDataModule(
        features=save_as(tmp_path / f"x{suffix}", x), labels=save_as(tmp_path / f"y{suffix}", y),
        test_features=save_as(tmp_path / f"xt{suffix}", x_test), test_labels=save_as(tmp_path / f"yt{suffix}", y_test),
        val_fraction=0.25,
    )
    dm.setup()
    ids = np.rint(torch.cat([dm.train_x, dm.val_x])[:, 0].numpy()).astype(int)
    assert sorted(ids) == list(range(20))
    assert torch.equal(torch.cat([dm.train_x, dm.val_x]), torch.from_numpy(x[ids]).float())
    assert torch.equal(torch.cat([dm.train_y, dm.val_y]), torch.from_numpy(y[ids]))
    assert torch.equal(dm.test_x, torch.from_numpy(x_test).float())  # given test files: used as they are
    assert torch.equal(dm.test_y, torch.from_numpy(y_test))
    assert dm.n_classes == 2


def test_arrays_with_labels_and_no_test_files_cut_a_stratified_split(tmp_path):
    y = np.repeat([0, 1, 2], [30, 20, 10])
    dm = arrays_module(tmp_path, id_features(60), y, test_fraction=0.2, val_fraction=0.0, seed=5)
    dm.setup()
    assert torch.bincount(dm.test_y).tolist() == [6, 4, 2]  # 20 % of every class
    train_ids, test_ids = (np.rint(t[:, 0].numpy()).astype(int) for t in (dm.train_x, dm.test_x))
    assert sorted([*train_ids, *test_ids]) == list(range(60))
    assert torch.equal(dm.train_y, torch.from_numpy(y[train_ids]))
    assert torch.equal(dm.test_y, torch.from_numpy(y[test_ids]))


def test_arrays_with_test_files_cut_no_split(tmp_path):
    x, x_test = id_features(10), id_features(3, seed=1)
    np.save(tmp_path / "xt.npy", x_test)
    dm = arrays_module(tmp_path, x, test_features=str(tmp_path / "xt.npy"), val_fraction=0.0, test_fraction=0.5)
    dm.setup()
    assert sorted(np.rint(dm.train_x[:, 0].numpy()).astype(int)) == list(range(10))
    assert torch.equal(dm.test_x, torch.from_numpy(x_test).float())


def test_unlabelled_arrays_have_no_classes_and_serve_one_tensor_batches(tmp_path):
    dm = arrays_module(tmp_path, id_features(20), batch_size=8, val_fraction=0.2)
    dm.setup()
    assert dm.n_classes is None and dm.train_y is None and dm.test_y is None
    assert (len(dm.train_x), len(dm.val_x), len(dm.test_x)) == (13, 3, 4)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, tuple) and len(batch) == 1 and batch[0].shape == (8, 4)
    (val_batch,) = list(dm.val_dataloader())
    assert torch.equal(val_batch[0], dm.val_x)  # validation is served in order


def _bad_input(tmp_path: Path, case: str) -> dict:
    """Constructor arguments for one kind of unusable input, with its files written."""
    x = np.random.default_rng(0).random((10, 3))
    f = lambda name, a: save_as(tmp_path / name, a)
    if case == "labels length":
        return {"features": f("x.npy", x), "labels": f("y.npy", np.zeros(9, int))}
    if case == "nan features":
        return {"features": f("x.npy", np.where(np.eye(10, 3) > 0, np.nan, x)), "test_fraction": 0.0}
    if case == "inf features":
        x[4, 1] = -np.inf
        return {"features": f("x.npy", x)}
    if case == "inf test features, minmax":
        return {"features": f("x.npy", x), "test_features": f("xt.npy", np.full((2, 3), np.inf)), "scale": "minmax"}
    if case in ("1-D features", "1-D features, minmax"):
        return {"features": f("x.npy", x[:, 0]), "scale": "minmax" if "minmax" in case else None}
    if case == "missing file":
        return {"features": str(tmp_path / "nowhere.npy")}
    if case == "float labels":
        return {"features": f("x.npy", x), "labels": f("y.npy", np.linspace(0, 1, 10))}
    if case == "float labels, test files":
        return {"features": f("x.npy", x), "labels": f("y.npy", np.full(10, 0.5)), "test_features": f("xt.npy", x)}
    if case == "two arrays in npz":
        np.savez(tmp_path / "x.npz", a=x, b=x)
        return {"features": str(tmp_path / "x.npz")}
    if case == "csv":
        (tmp_path / "x.csv").write_text("1,2\n")
        return {"features": str(tmp_path / "x.csv")}
    raise KeyError(case)


BAD_INPUTS = [
    ("labels length", r"features have 10 rows but labels have 9"),
    ("nan features", r"holds 3 NaN or infinite values"),
    ("inf features", r"holds 1 NaN or infinite values"),
    ("inf test features, minmax", r"test data holds 6 NaN or infinite values"),
    ("1-D features", r"1-D \(shape \(\d+,\)\).*\(n_samples, n_features\)"),
    ("1-D features, minmax", r"1-D \(shape \(\d+,\)\).*\(n_samples, n_features\)"),
    ("missing file", r"features file .*nowhere\.npy does not exist"),
    ("float labels", r"integer class labels.*non-integer"),
    ("float labels, test files", r"integer class labels.*non-integer"),
    ("two arrays in npz", r"holds arrays \['a', 'b'\]; save exactly one"),
    ("csv", r"unsupported type '\.csv'"),
]


@pytest.mark.parametrize("case, message", BAD_INPUTS, ids=[case for case, _ in BAD_INPUTS])
def test_arrays_reject_unusable_input_with_the_reason(tmp_path, case, message):
    dm = ArraysDataModule(**_bad_input(tmp_path, case))
    with pytest.raises(DataError, match=message):
        dm.setup()


def test_minmax_uses_training_statistics_and_clips_the_test_set(tmp_path):
    x = np.array([[0.0, 10.0, 5.0], [2.0, 20.0, 5.0], [4.0, 30.0, 5.0]])  # the last column is constant
    x_test = np.array([[-2.0, 20.0, 7.0], [1.0, 40.0, 5.0]])
    np.save(tmp_path / "xt.npy", x_test)
    dm = arrays_module(tmp_path, x, test_features=str(tmp_path / "xt.npy"), scale="minmax", val_fraction=0.0)
    dm.setup()
    np.testing.assert_array_equal(dm.scale_min, [0.0, 10.0, 5.0])
    np.testing.assert_array_equal(dm.scale_max, [4.0, 30.0, 5.0])
    train = dm.train_x[dm.train_x[:, 0].argsort()]  # the split permutes rows
    # a constant feature has no span: it maps to 0 rather than dividing by zero
    assert torch.equal(train, torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0, 1.0, 0.0]]))
    # test rows use the training min and span; what falls outside is clipped to [0, 1]
    assert torch.equal(dm.test_x, torch.tensor([[0.0, 0.5, 1.0], [0.25, 1.0, 0.0]]))


def test_minmax_on_a_cut_split_ignores_the_test_part(tmp_path):
    x, y = np.random.default_rng(2).normal(size=(50, 6)) * 10, np.arange(50) % 2
    dm = arrays_module(tmp_path, x, y, scale="minmax", test_fraction=0.3, val_fraction=0.2, seed=4)
    dm.setup()
    # the split depends only on n, the labels and the seed, so scikit-learn can name the training rows
    train_idx, _ = train_test_split(np.arange(50), test_size=0.3, stratify=y, random_state=4)
    np.testing.assert_array_equal(dm.scale_min, x[train_idx].min(0))
    np.testing.assert_array_equal(dm.scale_max, x[train_idx].max(0))
    assert not (np.array_equal(dm.scale_min, x.min(0)) and np.array_equal(dm.scale_max, x.max(0)))  # a real test
    training = torch.cat([dm.train_x, dm.val_x])
    assert torch.equal(training.min(0).values, torch.zeros(6)) and torch.equal(training.max(0).values, torch.ones(6))
    assert float(dm.test_x.min()) >= 0.0 and float(dm.test_x.max()) <= 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"binarize": "round"}, "binarize must be null, 'threshold' or 'sample'"),
        ({"scale": "zscore"}, "scale must be null, 'minmax' or 'standard'"),
    ],
    ids=["batch_size", "val_fraction", "binarize", "scale"],
)
def test_constructor_rejects_bad_settings(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        ArraysDataModule(features=str(tmp_path / "x.npy"), **kwargs)


def test_a_validation_share_that_leaves_no_training_data_is_rejected(tmp_path):
    dm = arrays_module(tmp_path, np.ones((2, 3)), val_fraction=0.9, test_fraction=0.0)
    with pytest.raises(DataError, match="leaves no training data out of 2 samples"):
        dm.setup()


# binarisation ---------------------------------------------------------------------------------------------
def probabilities(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Values in [0, 1], with an all-0 and an all-1 column and exact 0.5s (which threshold to 0)."""
    x = np.random.default_rng(seed).random((n, 6))
    x[:, 0], x[:, 1], x[::7, 2] = 0.0, 1.0, 0.5
    return x


def test_threshold_binarization_is_x_above_one_half(tmp_path):
    x, x_test = probabilities(200), probabilities(20, seed=1)
    np.save(tmp_path / "xt.npy", x_test)
    kw = {"test_features": str(tmp_path / "xt.npy"), "val_fraction": 0.1, "seed": 3}
    plain = arrays_module(tmp_path, x, **kw)
    binary = arrays_module(tmp_path, x, binarize="threshold", **kw)
    plain.setup()
    binary.setup()
    # thresholding draws no random numbers, so both modules split the rows identically
    for b, p in ((binary.train_x, plain.train_x), (binary.val_x, plain.val_x), (binary.test_x, plain.test_x)):
        assert b.dtype == torch.float32
        assert torch.equal(b, (p > 0.5).float())
    assert set(binary.train_x.unique().tolist()) == {0.0, 1.0}


def test_sample_binarization_draws_bernoulli_x_reproducibly(tmp_path):
    x = probabilities()

    def sampled(seed):
        dm = arrays_module(tmp_path, x, binarize="sample", val_fraction=0.0, test_fraction=0.0, seed=seed)
        dm.setup()
        return dm.train_x

    v = sampled(0)
    assert set(v.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(v, sampled(0)) and not torch.equal(v, sampled(1))
    # column means are invariant to the row permutation of the split. Each column mean of independent
    # Bernoulli(x_i) draws has expectation mean(x) and standard deviation sqrt(sum x_i (1 - x_i)) / n
    # (<= 0.5 / sqrt(2000) ~ 0.011); five of those leaves a ~1e-6 chance of a false alarm per column.
    sd = np.sqrt((x * (1 - x)).sum(0)) / len(x)
    assert np.all(np.abs(v.double().mean(0).numpy() - x.mean(0)) <= 5 * sd)
    assert torch.all(v[:, 0] == 0) and torch.all(v[:, 1] == 1)  # p = 0 and p = 1 are certain


def test_sample_binarization_needs_values_in_the_unit_interval(tmp_path):
    dm = arrays_module(tmp_path, probabilities(20) * 2, binarize="sample", test_fraction=0.0)
    with pytest.raises(DataError, match=r"needs values in \[0, 1\]; scale the data first"):
        dm.setup()


def test_invert_gives_the_exact_complements_of_the_binarised_images(tmp_path):
    """data.invert: the same draws and split as without it, every value x -> 1 - x (train, val and test)."""
    x, x_test = probabilities(200), probabilities(20, seed=1)
    np.save(tmp_path / "xt.npy", x_test)
    kw = {"test_features": str(tmp_path / "xt.npy"), "val_fraction": 0.1, "seed": 3, "binarize": "sample"}
    plain, flipped = arrays_module(tmp_path, x, **kw), arrays_module(tmp_path, x, invert=True, **kw)
    plain.setup()
    flipped.setup()
    for f, p in ((flipped.train_x, plain.train_x), (flipped.val_x, plain.val_x), (flipped.test_x, plain.test_x)):
        assert torch.equal(f, 1 - p)


def test_invert_keeps_missing_entries_zero_filled_and_refuses_values_outside_the_unit_interval(tmp_path):
    x = probabilities(20)
    x[3, 2] = np.nan
    dm = arrays_module(tmp_path, x, missing=True, invert=True, val_fraction=0.0, test_fraction=0.0)
    dm.setup()
    row = int(torch.nonzero(dm.train_mask[:, 2] == 0)[0])
    assert dm.train_x[row, 2] == 0 and torch.allclose(dm.train_x[row, :2], torch.tensor([1.0, 0.0]))
    with pytest.raises(DataError, match=r"invert=true needs training data in \[0, 1\].*scale the data"):
        arrays_module(tmp_path, probabilities(20) * 2, invert=True, test_fraction=0.0).setup()


# TensorBatches / batch_loader ------------------------------------------------------------------------------
def test_batch_loader_batches_equal_direct_indexing():
    x, y = torch.arange(30.0).reshape(10, 3), torch.arange(10) % 3
    batches = list(batch_loader(x, y, batch_size=4))
    assert [tuple(b[0].shape) for b in batches] == [(4, 3), (4, 3), (2, 3)]  # the last batch is partial
    for k, batch in enumerate(batches):
        assert isinstance(batch, tuple) and len(batch) == 2
        assert torch.equal(batch[0], x[4 * k : 4 * k + 4]) and torch.equal(batch[1], y[4 * k : 4 * k + 4])
    assert batches[0][1].dtype == torch.int64


def test_batch_loader_of_one_tensor_gives_one_tuples_and_can_drop_the_last_batch():
    x = torch.arange(20.0).reshape(10, 2)
    batches = list(batch_loader(x, batch_size=3, drop_last=True))
    assert [len(b) for b in batches] == [1, 1, 1]
    assert torch.equal(torch.cat([b[0] for b in batches]), x[:9])


def test_shuffled_batches_are_a_permutation_of_the_rows():
    x = torch.arange(50.0).reshape(25, 2)
    torch.manual_seed(0)
    rows = torch.cat([b[0] for b in batch_loader(x, x[:, 0].long(), batch_size=7, shuffle=True)])
    assert not torch.equal(rows, x)
    assert torch.equal(rows[rows[:, 0].argsort()], x)


def test_tensor_batches_need_tensors_of_equal_length():
    with pytest.raises(ValueError, match="equal length"):
        TensorBatches(torch.zeros(3, 2), torch.zeros(4))
    ds = TensorBatches(torch.zeros(3, 2), torch.arange(3))
    assert len(ds) == 3 and torch.equal(ds.__getitems__([2, 0])[1], torch.tensor([2, 0]))


# PretrainDataModule ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_train, n_val, monitor_size, n", [(40, 30, 2000, 30), (20, 30, 2000, 20), (40, 30, 8, 8)])
def test_pretrain_validation_serves_held_out_then_a_same_size_training_subset(n_train, n_val, monitor_size, n):
    g = torch.Generator().manual_seed(0)
    train_x, val_x = torch.rand(n_train, 5, generator=g), torch.rand(n_val, 5, generator=g)
    dm = PretrainDataModule(train_x, val_x, batch_size=4, monitor_size=monitor_size)
    dm.setup("fit")  # no trainer: the tensors stay where they are
    held_out, training = dm.val_dataloader()
    got_val = torch.cat([b[0] for b in held_out])
    got_train = torch.cat([b[0] for b in training])
    assert len(got_val) == len(got_train) == n == min(monitor_size, n_train, n_val)
    assert torch.equal(got_val, val_x[:n]) and torch.equal(got_train, train_x[:n])
    rows = torch.cat([b[0] for b in dm.train_dataloader()])
    assert len(rows) == n_train and torch.equal(rows[rows[:, 0].argsort()], train_x[train_x[:, 0].argsort()])


def test_pretrain_without_held_out_data_has_no_validation_loaders():
    dm = PretrainDataModule(torch.rand(10, 3), None, batch_size=4)
    assert dm.val_dataloader() == []
    assert sum(len(b[0]) for b in dm.train_dataloader()) == 10


def test_tests_cannot_reach_the_network():
    """The autouse guard of conftest.py: a download attempt fails before any packet is sent; loopback stays open."""
    with pytest.raises(AssertionError, match="never use the network"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname(), timeout=1):
        pass
