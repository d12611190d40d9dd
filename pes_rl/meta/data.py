"""Datasets for the unrolled-optimization tasks: fixed splits as device arrays, no downloads.

``load("digits")`` (the default) is scikit-learn's 8×8 digits, which ship inside the package
(1797 × 64, values 0–16). ``load("path/to/file.npz")`` reads MNIST / Fashion-MNIST style arrays
a user already has on disk (``x_train``, ``y_train``, ``x_test``, ``y_test``; images of any
shape are flattened). Both give the same :class:`Dataset`: train / validation / test splits,
features standardized with the training split's statistics, labels as int32.

Examples:
  >>> from pes_rl import data
  >>> digits = data.load("digits")
  >>> digits.train_x.shape, digits.num_classes
  ((1257, 64), 10)
"""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
DIGITS_SPLIT = (1257, 270, 270)  # train / validation / test rows of the 1797 digits
SPLIT_SEED = 0  # the fixed permutation behind the digits split


class Dataset(NamedTuple):
    """Standardized features [n, d] float32 and integer labels [n] int32 of each split."""

    train_x: jnp.ndarray
    train_y: jnp.ndarray
    val_x: jnp.ndarray
    val_y: jnp.ndarray
    test_x: jnp.ndarray
    test_y: jnp.ndarray
    num_classes: int


class DataError(ValueError):
    """A dataset file that is missing or does not hold the expected arrays."""


def load(name: str = "digits", validation_fraction: float = 1 / 6) -> Dataset:
    """``"digits"`` or the path of an ``.npz`` with ``x_train, y_train, x_test, y_test``.

    An ``.npz``'s validation split is the last ``validation_fraction`` of its training rows
    (MNIST: the last 10k of 60k, as in the PES paper).

    Raises:
      DataError: a missing or malformed file; the message names the path and the arrays.
    """
    if name == "digits":
        return _digits()
    file = Path(name)
    # Cached per file version: envs built from the same file share one copy on the device.
    version = (file.stat().st_mtime_ns, file.stat().st_size) if file.is_file() else None
    return _npz(str(name), float(validation_fraction), version)


@functools.cache
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    x, y = x[order], y[order]
    num_train, num_val, _ = DIGITS_SPLIT
    train, val = slice(0, num_train), slice(num_train, num_train + num_val)
    test = slice(num_train + num_val, None)
    return _standardized(x[train], y[train], x[val], y[val], x[test], y[test])


@functools.lru_cache(maxsize=8)
def _npz(path: str, validation_fraction: float, version: tuple | None) -> Dataset:
    del version  # part of the cache key only
    expected = f"an .npz holding arrays {list(NPZ_ARRAYS)}"
    file = Path(path)
    if not file.is_file():
        what = "is a directory" if file.is_dir() else "does not exist"
        raise DataError(f"dataset file {path} {what}: expected {expected} (or 'digits')")
    try:
        arrays = np.load(file, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise DataError(f"dataset file {path} holds one array, not {expected}")
        with arrays:
            missing = [k for k in NPZ_ARRAYS if k not in arrays]
            if missing:
                raise DataError(f"dataset file {path} lacks {missing}: expected {expected}")
            x_train, y_train, x_test, y_test = (np.asarray(arrays[k]) for k in NPZ_ARRAYS)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(
            f"dataset file {path} is not readable as {expected} ({type(error).__name__})"
        ) from None
    if len(x_train) != len(y_train) or len(x_test) != len(y_test) or len(x_train) < 2:
        raise DataError(
            f"dataset file {path}: x and y of each split must have the same number of rows "
            f"(got train {len(x_train)}/{len(y_train)}, test {len(x_test)}/{len(y_test)})"
        )
    if not 0 < validation_fraction < 1:
        raise DataError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    num_val = max(1, int(round(len(x_train) * validation_fraction)))
    x_train = x_train.reshape(len(x_train), -1)
    x_test = x_test.reshape(len(x_test), -1)
    return _standardized(
        x_train[:-num_val], y_train[:-num_val], x_train[-num_val:], y_train[-num_val:],
        x_test, y_test,
    )  # fmt: skip


def _standardized(train_x, train_y, val_x, val_y, test_x, test_y) -> Dataset:
    """Features standardized per column with the training split's mean and std."""
    train_x = np.asarray(train_x, np.float32)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6

    def features(x):
        return jnp.asarray((np.asarray(x, np.float32) - mean) / std)

    def labels(y):
        return jnp.asarray(np.asarray(y).reshape(-1), jnp.int32)

    num_classes = int(max(np.max(train_y), np.max(val_y), np.max(test_y))) + 1
    return Dataset(
        features(train_x), labels(train_y), features(val_x), labels(val_y),
        features(test_x), labels(test_y), num_classes,
    )  # fmt: skip
