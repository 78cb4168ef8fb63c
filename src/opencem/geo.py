"""Geographic helpers shared by the simulator, ingest and (later) grid analytics."""

from __future__ import annotations

import h3
import numpy as np
import pyarrow as pa


def h3_cells(lat: np.ndarray, lon: np.ndarray, resolution: int, decimals: int | None = None) -> pa.Array:
    """H3 index (string) of each point; null where a coordinate is missing or out of range.

    h3 has no vectorised API, so only distinct positions are indexed (positions repeat heavily
    in drive tests and in people's daily places). ``decimals`` rounds positions first (4 is
    ~10 m) for speed where exactness at hexagon edges does not matter.
    """
    y = np.asarray(lat, float)
    x = np.asarray(lon, float)
    if decimals is not None:
        y, x = np.round(y, decimals), np.round(x, decimals)
    valid = np.isfinite(y) & np.isfinite(x) & (np.abs(y) <= 90) & (np.abs(x) <= 180)
    unique, inverse = np.unique(y[valid] + 1j * x[valid], return_inverse=True)
    cells = pa.array([h3.latlng_to_cell(float(p.real), float(p.imag), resolution) for p in unique],
                     pa.string())
    index = np.zeros(len(y), np.int64)
    index[valid] = inverse
    return cells.take(pa.array(index, mask=~valid))
