"""Vectorised identifier and timestamp helpers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded string ids like S00000042, built in Arrow (no Python loop)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def take(labels: list[str] | np.ndarray, index: np.ndarray) -> pa.Array:
    """Strings looked up by integer code, as a plain Arrow string array."""
    return pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()),
                                          pa.array(labels, pa.string())).cast(pa.string())


def timestamps_ms(epoch_ms: np.ndarray) -> pa.Array:
    return pa.array(epoch_ms.astype("int64"), pa.timestamp("ms", tz="UTC"))
