"""Web-browsing MOS from page load time, after the ITU-T G.1030 opinion model.

G.1030 (Annex A in 2005, Appendix II since 2014) found perceived quality of a web session to
fall linearly with the logarithm of the session time, MOS = a - b ln(t), fitted per network
context between the context's shortest session (MOS 5) and its longest (MOS 1). For one-page
sessions those anchors sit at roughly 0.5-1 s and 10-20 s.

The Recommendation's own fitted coefficients could not be checked against its text from the
sources available when this was written, so the model is parametrised by the two anchors and
the defaults are round values inside that range: MOS 5 at 0.5 s, MOS 1 at 15 s. Pass
`fastest_s`/`slowest_s` to fit another context (e.g. a slow-network one).
"""

from __future__ import annotations

import math

FASTEST_S = 0.5  # page load time that scores MOS 5 and below which nothing improves, s
SLOWEST_S = 15.0  # page load time that scores MOS 1, s


def coefficients(fastest_s: float = FASTEST_S, slowest_s: float = SLOWEST_S) -> tuple[float, float]:
    """(a, b) of MOS = a - b ln(t_ms) for t in milliseconds."""
    if not 0 < fastest_s < slowest_s:
        raise ValueError(f"need 0 < fastest_s < slowest_s, got {fastest_s} and {slowest_s}")
    b = 4 / math.log(slowest_s / fastest_s)
    return 5 + b * math.log(fastest_s * 1000), b


def web_mos_of(ops, page_load_ms, fastest_s: float = FASTEST_S, slowest_s: float = SLOWEST_S):
    """The formula once, for NumPy (`emodel.NumpyOps`) or SQL (`sql.SqlOps`).

    Clamping t to [fastest, slowest] keeps the log's argument positive (zero or negative
    load times score 5); the final clamp removes the last-bit rounding at the anchors.
    """
    a, b = coefficients(fastest_s, slowest_s)
    t = ops.minimum(ops.maximum(page_load_ms, fastest_s * 1000), slowest_s * 1000)
    return ops.minimum(ops.maximum(a - b * ops.ln(t), 1.0), 5.0)


def web_mos(page_load_ms, fastest_s: float = FASTEST_S, slowest_s: float = SLOWEST_S):
    """Web-browsing MOS (1..5) from page load time in ms; scalar or NumPy array (NaN stays NaN)."""
    if isinstance(page_load_ms, (int, float)) and math.isfinite(page_load_ms):
        from .emodel import ScalarOps  # one number: no NumPy

        return float(web_mos_of(ScalarOps, float(page_load_ms), fastest_s, slowest_s))
    import numpy as np

    from .emodel import numpy_ops

    value = web_mos_of(numpy_ops(), np.asarray(page_load_ms, dtype=float), fastest_s, slowest_s)
    return float(value) if np.ndim(value) == 0 else value
