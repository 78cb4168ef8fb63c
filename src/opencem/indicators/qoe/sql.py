"""The QoE models as SQL: SQLGlot expression trees that run unchanged on DuckDB and Spark.

Each macro takes SQLGlot nodes for its row inputs and returns one scalar expression. The
formulas are the ones in `emodel.rating`/`emodel.mos_of` and `web.web_mos_of`, evaluated with
`SqlOps` instead of NumPy, so SQL and Python agree to rounding. Rules the trees keep:

- only LN, EXP, POWER, SQRT, GREATEST, LEAST, CASE, COALESCE, CAST and arithmetic;
- every LN argument is bounded away from zero by construction (see the formulas);
- no division by a row value that can be zero (Spark 4 ANSI mode raises on it); the only row
  divisor, Ppl + Bpl*BurstR, is at least the smallest Bpl;
- numeric literals are DOUBLE (`0.004e0`): a plain `0.004` is DECIMAL in both engines;
- a NULL row input gives NULL, explicitly, because GREATEST skips NULLs on Spark;
- an unknown codec gives NULL (the Python model raises instead).
"""

from __future__ import annotations

from collections import defaultdict

from sqlglot import exp

from .emodel import CODEC_PUNCTUATION, CODECS, codec_key, fixed, mos_of, parameters, rating
from .web import FASTEST_S, SLOWEST_S, web_mos_of


def _node(value) -> exp.Expression:
    return value if isinstance(value, exp.Expression) else exp.convert(value)


class SqlOps:
    """The functions `emodel.rating()` needs, as SQL nodes both DuckDB and Spark have."""

    @staticmethod
    def ln(x):
        return exp.Ln(this=_node(x))

    @staticmethod
    def exp(x):  # module `exp` inside the body: methods do not see class attributes
        return exp.Exp(this=_node(x))

    @staticmethod
    def power(x, y):
        return exp.Pow(this=_node(x), expression=_node(y))

    @staticmethod
    def sqrt(x):
        return exp.Sqrt(this=_node(x))

    @staticmethod
    def maximum(x, y):
        return exp.Greatest(this=_node(x), expressions=[_node(y)], ignore_nulls=True)

    @staticmethod
    def minimum(x, y):
        return exp.Least(this=_node(x), expressions=[_node(y)], ignore_nulls=True)

    @staticmethod
    def where(condition, if_true, if_false):
        return exp.Case(ifs=[exp.If(this=condition, true=_node(if_true))], default=_node(if_false))


_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg)


def _finish(node):
    """A fresh tree for output: one parent per node (the formulas reuse subtrees), every
    numeric literal a DOUBLE, and every arithmetic operand that is itself arithmetic in
    parentheses (SQLGlot's operators build a - (b + c) without them)."""
    if isinstance(node, list):
        return [_finish(item) for item in node]
    if not isinstance(node, exp.Expression):
        return node
    if isinstance(node, exp.Literal) and not node.is_string:
        text = node.this if "e" in node.this.lower() else f"{node.this}e0"
        return exp.Literal(this=text, is_string=False)
    args = {key: _finish(value) for key, value in node.args.items()}
    if isinstance(node, _ARITHMETIC):
        args = {key: exp.Paren(this=value) if isinstance(value, _ARITHMETIC) else value
                for key, value in args.items()}
    return node.__class__(**args)


def _double(value: exp.Expression) -> exp.Expression:
    return exp.cast(value, exp.DataType.build("double"))


def _is_null(value: exp.Expression) -> exp.Expression:
    return exp.Is(this=value, expression=exp.Null())


def _null_unless_present(result: exp.Expression, *inputs: exp.Expression) -> exp.Expression:
    missing = exp.or_(*(_is_null(v) for v in inputs))
    return exp.Case(ifs=[exp.If(this=missing, true=exp.Null())], default=result)


def _codec_case(codec: exp.Expression, attribute: str) -> exp.Expression:
    """CASE over the CODECS table, names grouped by value: WHEN codec IN (...) THEN value."""
    names_by_value = defaultdict(list)
    for name, impairment in CODECS.items():
        names_by_value[float(getattr(impairment, attribute))].append(name)
    return exp.Case(ifs=[exp.If(this=_codec_in(codec, names), true=exp.convert(value))
                         for value, names in names_by_value.items()], default=exp.Null())


def _codec_in(codec: exp.Expression, names) -> exp.Expression:
    """``codec`` (already a :func:`_codec_key`) is one of ``names``."""
    return exp.In(this=codec, expressions=[exp.Literal.string(n) for n in sorted({codec_key(n) for n in names})])


def _codec_key(codec: exp.Expression) -> exp.Expression:
    """LOWER(TRIM(codec)) without the characters `emodel.codec_key` drops: 'amr-wb' in data
    is AMR-WB, as on the command line (REPLACE and LOWER exist in both engines)."""
    out = exp.Lower(this=exp.Trim(this=codec.copy()))
    for ch in CODEC_PUNCTUATION:
        out = exp.Anonymous(this="replace", expressions=[out, exp.Literal.string(ch), exp.Literal.string("")])
    return out


def _emodel(codec, packet_loss_pct, one_way_delay_ms, burst_ratio, overrides):
    codec = _codec_key(codec)
    k = fixed(parameters(**overrides))
    ta = _double(one_way_delay_ms)
    burst = exp.Coalesce(this=_double(burst_ratio), expressions=[exp.convert(1.0)]) \
        if burst_ratio is not None else exp.convert(1.0)
    wideband = _codec_in(codec, [n for n, c in CODECS.items() if c.band == "wb"])
    r = rating(SqlOps, k, ta=ta, t=ta, tr=2 * ta, ppl=_double(packet_loss_pct),
               burst_ratio=burst, ie=_codec_case(codec, "ie"), bpl=_codec_case(codec, "bpl"),
               wideband=wideband)["r"]
    return r, wideband


def _guard(result, codec, packet_loss_pct, one_way_delay_ms):
    unknown = exp.Not(this=_codec_in(_codec_key(codec), list(CODECS)))
    missing = exp.or_(_is_null(codec), _is_null(packet_loss_pct), _is_null(one_way_delay_ms),
                      unknown)
    return _finish(exp.Case(ifs=[exp.If(this=missing, true=exp.Null())], default=result))


def emodel_r_sql(codec: exp.Expression, packet_loss_pct: exp.Expression,
                 one_way_delay_ms: exp.Expression, burst_ratio: exp.Expression | None = None,
                 **overrides: float) -> exp.Expression:
    """Per-row R on the codec's scale (G.107 or G.107.1), as `emodel.r_factor` computes it.

    Inputs: codec name (string), packet loss in % (0..100), mouth-to-ear delay in ms, G.107
    BurstR (NULL or omitted: 1). Overrides are G.107 parameters, fixed for every row.
    """
    r, _ = _emodel(codec, packet_loss_pct, one_way_delay_ms, burst_ratio, overrides)
    return _guard(r, codec, packet_loss_pct, one_way_delay_ms)


def emodel_mos_sql(codec: exp.Expression, packet_loss_pct: exp.Expression,
                   one_way_delay_ms: exp.Expression, burst_ratio: exp.Expression | None = None,
                   **overrides: float) -> exp.Expression:
    """Per-row MOS (1..4.5) from the E-model, as `emodel.emodel(...)['mos']` computes it."""
    r, wideband = _emodel(codec, packet_loss_pct, one_way_delay_ms, burst_ratio, overrides)
    return _guard(mos_of(SqlOps, r, wideband), codec, packet_loss_pct, one_way_delay_ms)


def web_mos_sql(page_load_ms: exp.Expression, fastest_s: float = FASTEST_S,
                slowest_s: float = SLOWEST_S) -> exp.Expression:
    """Per-row web-browsing MOS (1..5) from page load time in ms, as `web.web_mos` computes it."""
    mos = web_mos_of(SqlOps, _double(page_load_ms), fastest_s, slowest_s)
    return _finish(_null_unless_present(mos, page_load_ms))
