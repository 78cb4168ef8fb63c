"""Geographic helpers shared by the simulator, ingest and (later) grid analytics."""

from __future__ import annotations

import h3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


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
    valid, unique, inverse = _distinct_positions(y, x)
    cells = pa.array([h3.latlng_to_cell(float(p.real), float(p.imag), resolution) for p in unique],
                     pa.string())
    index = np.zeros(len(y), np.int64)
    index[valid] = inverse
    return cells.take(pa.array(index, mask=~valid))


def _distinct_positions(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(valid, distinct positions as lat + 1j*lon, index of each valid point into them)."""
    valid = np.isfinite(y) & np.isfinite(x) & (np.abs(y) <= 90) & (np.abs(x) <= 180)
    unique, inverse = np.unique(y[valid] + 1j * x[valid], return_inverse=True)
    return valid, unique, inverse


# A position's H3 cell is stored once, at the finest resolution, as a 64-bit integer; the
# cell at any coarser resolution is then two bit operations every engine has (AND, OR), so a
# grid cube needs no H3 function in SQL. Layout (H3 index mode 1): bits 52-55 hold the
# resolution, then one 3-bit digit per resolution 1..15 from bit 44 down; digits finer than
# the resolution are 7 (binary 111).
FINEST = 15
_RES_SHIFT = 52


def h3_ints(lat: np.ndarray, lon: np.ndarray, resolution: int = FINEST) -> pa.Array:
    """H3 index (int64) of each point at ``resolution``; null where a coordinate is missing or
    out of range. Positions are indexed once each, as in :func:`h3_cells`."""
    valid, unique, inverse = _distinct_positions(np.asarray(lat, float), np.asarray(lon, float))
    to_cell = h3.api.basic_int.latlng_to_cell
    cells = np.fromiter((to_cell(float(p.real), float(p.imag), resolution) for p in unique), np.int64, len(unique))
    out = np.zeros(len(valid), np.int64)
    out[valid] = cells[inverse]
    return pa.array(out, pa.int64(), mask=~valid)


def parent_masks(resolution: int) -> tuple[int, int]:
    """(keep, set): the H3 cell at ``resolution`` holding a finer cell h is (h & keep) | set."""
    if not 0 <= resolution <= FINEST:
        raise ValueError(f"H3 resolution {resolution} is outside 0..{FINEST}")
    unused = (1 << (3 * (FINEST - resolution))) - 1  # the digits finer than the resolution
    keep = ((1 << 63) - 1) & ~(0xF << _RES_SHIFT) & ~unused
    return keep, (resolution << _RES_SHIFT) | unused


def h3_parent_text(cells: pa.Array, resolution: int) -> pa.Array:
    """The H3 string (as h3 writes it) of the parent at ``resolution`` of int64 cells, null
    where the cell is: the same arithmetic the SQL renderers use."""
    keep, put = parent_masks(resolution)
    valid = pc.is_valid(cells).to_numpy(zero_copy_only=False)
    values = cells.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = (values & np.int64(keep)) | np.int64(put)
    text = [format(int(v), "x") if ok else None for v, ok in zip(parents.tolist(), valid.tolist())]
    return pa.array(text, pa.string())
