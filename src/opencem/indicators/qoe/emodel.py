"""Voice quality from network measurements: the ITU-T G.107 E-model and its wideband form G.107.1.

R = Ro - Is - Id - Ie,eff + A, then MOS from R (G.107 Annex B; G.107.1 Annex A for wideband).
Everything that does not depend on the row (Ro, Iolr, Iq, Roe, ...) is evaluated once from the
G.107 parameters; the row-dependent part is written once in `rating()` against a tiny `ops`
namespace, so the NumPy path here and the SQL macros in `sql.py` compute the same formula.

Scales. Narrowband codecs are rated on the G.107 scale (R up to ~93 with default parameters,
MOS via Annex B). Wideband codecs are rated on the G.107.1 scale (Ro,WB = 129) and `r_factor`
returns R on that scale; `r_narrowband_equivalent` divides it by 1.29, the conversion G.107.1
Annex A applies before the Annex B polynomial, so MOS is comparable across bands (R is not).
On the wideband scale Is,WB = 0 (G.107.1) and the G.107 delay impairments are multiplied by
1.29, so a given delay costs the same MOS in both bands; G.107.1's own Id,WB equations were not
available to check, and this is the documented stand-in.

Delays. The simulator and probes give one mouth-to-ear delay per call. It is used as Ta
(absolute delay) and, as is usual when the echo paths are not known separately, T = Ta
(talker-echo path) and Tr = 2 Ta (listener-echo round trip). Pass T=... or Tr=... to override.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import cache
from typing import NamedTuple


class _LazyNumpy:
    """NumPy, imported on first use: scoring one call from the command line needs none."""

    def __getattr__(self, name: str):
        import numpy

        return getattr(numpy, name)


np = _LazyNumpy()

RO_WB = 129.0  # G.107.1 basic signal-to-noise ratio on the wideband scale
WB_SCALE = 1.29  # G.107.1 Annex A: R_nb-equivalent = R_wb / 1.29
LN10 = math.log(10.0)
LN2 = math.log(2.0)


class CodecImpairment(NamedTuple):
    band: str  # 'nb' (G.107 scale) or 'wb' (G.107.1 scale)
    ie: float  # equipment impairment factor Ie (Ie,WB for wideband)
    bpl: float  # packet-loss robustness factor Bpl


# Sources: ITU-T G.113 Appendix I (narrowband: Ie in Table I.1, Bpl in Table I.3) and
# Appendix IV (wideband: Ie,WB in Table IV.1, monotic/handset; Bpl,WB in Table IV.4). The G.113
# text itself was not in the reference material available here, so each figure was checked
# against a secondary source: the Appendix IV figures against the G.113 (09/2024) transcription
# in the open-source sipnab project (rtp/emodel_wb.rs); G.729A's Ie against Mitel's MX-ONE
# planning guide; the G.711 Bpl pair against the Telenor Telektronikk VoIP study, whose measured
# slopes (~25 R per % loss without PLC, ~4 with PLC) are 95/Bpl for Bpl 4.3 and 25.1.

# G.711: Ie 0 (Table I.1); Bpl 25.1 with the G.711 Appendix I PLC, 4.3 without (Table I.3).
_G711 = CodecImpairment("nb", 0.0, 25.1)
_G711_NO_PLC = CodecImpairment("nb", 0.0, 4.3)
# G.729A+VAD: Ie 11 (Table I.1), Bpl 19.0 (Table I.3).
_G729A = CodecImpairment("nb", 11.0, 19.0)
# AMR-NB 12.2 kbit/s is the GSM-EFR algorithm (3GPP TS 26.090), so Ie 5 is Table I.1's GSM-EFR
# row. G.113 publishes no Bpl for AMR or EFR: 10 is our documented, conservative choice, below
# G.729A's 19 because EFR frame substitution conceals loss worse (Telektronikk study above).
_AMR_NB = CodecImpairment("nb", 5.0, 10.0)
# AMR-WB 12.65: Ie,WB 13 (Table IV.1, monotic). Bpl 4.3 is Table IV.4's, the only published
# Bpl,WB (diotic, uniform loss): loss is scored with a diotic factor on a handset Ie.
_AMR_WB_1265 = CodecImpairment("wb", 13.0, 4.3)
# AMR-WB 23.85: Ie,WB 8 (Table IV.1; yes, worse than 23.05's 1), Bpl 4.9 (Table IV.4).
_AMR_WB_2385 = CodecImpairment("wb", 8.0, 4.9)
# EVS: G.113 publishes only a fullband Ie,FB for EVS-SWB (Appendix V, G.107.2 scale), no Ie,WB
# or Bpl,WB. We score EVS-WB with AMR-WB 12.65's values as a floor: 3GPP's characterisation
# (TR 26.952) found EVS-WB 13.2 kbit/s at least as good as AMR-WB 12.65, and EVS conceals loss
# better, so this understates EVS rather than flattering it.
_EVS = _AMR_WB_1265

CODECS: dict[str, CodecImpairment] = {
    "G.711": _G711,
    "G.711-noPLC": _G711_NO_PLC,
    "G.729A": _G729A,
    "AMR-NB": _AMR_NB,  # the simulator's name; 12.2 kbit/s mode
    "AMR-NB-12.2": _AMR_NB,
    "AMR-WB": _AMR_WB_1265,  # the simulator's name; 12.65 kbit/s, the usual VoLTE mode
    "AMR-WB-12.65": _AMR_WB_1265,
    "AMR-WB-23.85": _AMR_WB_2385,
    "EVS": _EVS,  # the simulator's name; EVS-WB 13.2 kbit/s
    "EVS-13.2": _EVS,
}


@dataclass(frozen=True)
class G107Parameters:
    """Transmission parameters of the E-model; defaults are G.107 (06/2015) Table 3."""

    SLR: float = 8.0  # send loudness rating, dB
    RLR: float = 2.0  # receive loudness rating, dB
    STMR: float = 15.0  # sidetone masking rating, dB
    LSTR: float = 18.0  # listener sidetone rating, dB (= STMR + Dr)
    Ds: float = 3.0  # D-value of telephone, send side
    Dr: float = 3.0  # D-value of telephone, receive side (enters only through LSTR)
    TELR: float = 65.0  # talker echo loudness rating, dB
    WEPL: float = 110.0  # weighted echo path loss, dB
    Nc: float = -70.0  # circuit noise referred to the 0 dBr point, dBm0p
    Nfor: float = -64.0  # noise floor at the receive side, dBmp
    Ps: float = 35.0  # room noise at the send side, dB(A)
    Pr: float = 35.0  # room noise at the receive side, dB(A)
    qdu: float = 1.0  # number of quantizing distortion units
    A: float = 0.0  # advantage factor
    sT: float = 1.0  # delay sensitivity (G.107 2015; 1 = conversational telephony)
    mT: float = 100.0  # minimum perceivable delay, ms


ROW_OVERRIDES = ("T", "Tr")  # per-row delays that replace the T = Ta, Tr = 2 Ta convention


def parameters(**overrides: float) -> G107Parameters:
    """G.107 parameters with the named defaults replaced; unknown names are an error."""
    known = {f.name for f in fields(G107Parameters)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown E-model parameter {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known | set(ROW_OVERRIDES)))}")
    return replace(G107Parameters(), **{k: float(v) for k, v in overrides.items()})


@dataclass(frozen=True)
class Fixed:
    """The parts of the E-model that do not depend on the row (G.107 §7.2-7.4)."""

    p: G107Parameters
    No: float  # total noise power, dBm0p
    Ro: float  # basic signal-to-noise ratio
    Iolr: float  # impairment from too-low overall loudness
    Iq: float  # quantizing distortion impairment
    Roe: float  # Ro term of the talker-echo impairment
    stmr_power: float  # 10^(-STMR/10)
    telr_power: float  # 10^(-TELR/10)
    rle_scale: float  # 10.5 (WEPL + 7), the listener-echo rating before the Tr term


def fixed(p: G107Parameters) -> Fixed:
    """Evaluate the row-independent E-model terms once (G.107 §7.2 Ro, §7.3 Iolr/Iq, Roe)."""
    olr = p.SLR + p.RLR
    nos = p.Ps - p.SLR - p.Ds - 100 + 0.004 * (p.Ps - olr - p.Ds - 14) ** 2
    pre = p.Pr + 10 * math.log10(1 + 10 ** ((10 - p.LSTR) / 10))
    nor = p.RLR - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = p.Nfor + p.RLR
    no = 10 * math.log10(sum(10 ** (n / 10) for n in (p.Nc, nos, nor, nfo)))
    ro = 15 - 1.5 * (p.SLR + no)
    xolr = olr + 0.2 * (64 + no - p.RLR)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    q = 37 - 15 * math.log10(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q ** 2
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * math.log10(1 + 10 ** y + 10 ** z)
    return Fixed(p=p, No=no, Ro=ro, Iolr=iolr, Iq=iq, Roe=-1.5 * (no - p.RLR),
                 stmr_power=10 ** (-p.STMR / 10), telr_power=10 ** (-p.TELR / 10),
                 rle_scale=10.5 * (p.WEPL + 7))


class ScalarOps:
    """The functions `rating()` needs, on plain floats: one call scored without NumPy."""

    ln = staticmethod(math.log)
    exp = staticmethod(math.exp)
    power = staticmethod(math.pow)
    sqrt = staticmethod(math.sqrt)
    maximum = staticmethod(max)
    minimum = staticmethod(min)
    where = staticmethod(lambda cond, a, b: a if cond else b)


@cache
def numpy_ops():
    """The functions `rating()` needs, on NumPy arrays (the SQL twin lives in sql.py)."""
    import numpy

    class NumpyOps:
        ln = staticmethod(numpy.log)
        exp = staticmethod(numpy.exp)
        power = staticmethod(numpy.power)
        sqrt = staticmethod(numpy.sqrt)
        maximum = staticmethod(numpy.maximum)
        minimum = staticmethod(numpy.minimum)
        where = staticmethod(numpy.where)

    return NumpyOps


def __getattr__(name: str):
    if name == "NumpyOps":
        return numpy_ops()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rating(ops, k: Fixed, ta, t, tr, ppl, burst_ratio, ie, bpl, wideband) -> dict:
    """Row-dependent E-model terms and R, written once for NumPy and SQL.

    ta, t, tr: delays in ms (clamped at 0 here); ppl: packet loss in % (clamped to 0..100);
    burst_ratio: G.107 BurstR (clamped at 1, the random-loss value); ie, bpl: codec factors;
    wideband: boolean, True for G.107.1 codecs. Returns R and its components on the codec's scale.
    """
    p = k.p
    ta, t, tr = ops.maximum(ta, 0.0), ops.maximum(t, 0.0), ops.maximum(tr, 0.0)
    ppl = ops.minimum(ops.maximum(ppl, 0.0), 100.0)
    burst_ratio = ops.maximum(burst_ratio, 1.0)

    # Is: sidetone, with talker echo heard as sidetone (G.107 §7.3); 10 log10 = (10/ln10) ln.
    stmro = -10 / LN10 * ops.ln(k.stmr_power + k.telr_power * ops.exp(-t / 4))
    ist = (12 * ops.power(1 + ops.power((stmro - 13) / 6, 8.0), 1 / 8)
           - 28 * ops.power(1 + ops.power((stmro + 1) / 19.4, 35.0), 1 / 35)
           - 13 * ops.power(1 + ops.power((stmro - 3) / 33, 13.0), 1 / 13) + 29)

    # Idte, talker echo (§7.4); log10((1+T/10)/(1+T/150)) as a difference of logs, no division.
    terv = (p.TELR - 40 / LN10 * (ops.ln(1 + t / 10) - ops.ln(1 + t / 150))
            + 6 * ops.exp(-0.3 * t * t))
    if p.STMR < 9:  # TERVs: low sidetone masks echo less
        terv = terv + ist / 2
    re_minus = k.Roe - (80 + 2.5 * (terv - 14))  # Roe - Re
    idte = (re_minus / 2 + ops.sqrt(re_minus * re_minus / 4 + 100) - 1) * (1 - ops.exp(-t))
    if p.STMR > 20:  # Idtes: very quiet sidetone
        idte = ops.sqrt(idte * idte + ist * ist)

    # Idle, listener echo (§7.4).
    ro_minus_rle = k.Ro - k.rle_scale * ops.power(tr + 1, -0.25)
    idle = ro_minus_rle / 2 + ops.sqrt(ro_minus_rle * ro_minus_rle / 4 + 169)

    # Idd, absolute delay (§7.4): X = log2(Ta/mT); taking max(Ta, mT) makes X = 0 and so
    # Idd = 25 (1 - 3 + 2) = 0 exactly for Ta <= mT, without a branch.
    x = ops.ln(ops.maximum(ta, p.mT) / p.mT) / LN2
    e = 6 * p.sT
    idd = 25 * (ops.power(1 + ops.power(x, e), 1 / e)
                - 3 * ops.power(1 + ops.power(x / 3, e), 1 / e) + 2)

    # Ie,eff (G.107 §7.5; G.107.1 keeps the constant 95, not 129):
    # Ppl/(Ppl/BurstR + Bpl) multiplied through by BurstR so no row value is a divisor.
    ie_eff = ie + (95 - ie) * ppl * burst_ratio / (ppl + bpl * burst_ratio)

    # Wideband (G.107.1): Ro,WB = 129, Is,WB = 0; the G.107 delay terms are carried onto the
    # wideband scale by 1.29 so a given delay costs the same MOS in both bands.
    scale = ops.where(wideband, WB_SCALE, 1.0)
    ro = ops.where(wideband, RO_WB, k.Ro)
    is_ = ops.where(wideband, 0.0, k.Iolr + ist + k.Iq)
    idte, idle, idd = scale * idte, scale * idle, scale * idd
    id_ = idte + idle + idd
    return {"r": ro - is_ - id_ - ie_eff + p.A, "Ro": ro, "Is": is_, "Id": id_, "Idte": idte,
            "Idle": idle, "Idd": idd, "Ie_eff": ie_eff}


def mos_of(ops, r, wideband):
    """G.107 Annex B (G.107.1 Annex A for wideband: R/1.29 first), clamped to 1..4.5.

    1 + 0.035R + R(R-60)(100-R)7e-6 is expanded to Horner form (same polynomial, R used three
    times instead of four) and evaluated on R clamped to 0..100, where it gives 1 and 4.5.
    Between R = 0 and about 6.5 the cubic dips below 1 (0.989 at R = 3); Annex B's MOS is 1
    there, as for R < 0, so the result is floored at 1.
    """
    rx = ops.minimum(ops.maximum(r * ops.where(wideband, 1 / WB_SCALE, 1.0), 0.0), 100.0)
    return ops.maximum(1 + rx * (-0.007 + rx * (0.00112 - 7e-6 * rx)), 1.0)


def known_codecs() -> str:
    return ", ".join(CODECS)


# Punctuation and spacing a codec name may carry in data or on the command line: amr-wb,
# AMR_WB, "AMR WB" and AMR.WB are all AMR-WB. sql.py strips the same characters.
CODEC_PUNCTUATION = "-_. /"


def codec_key(name: str) -> str:
    """A codec name compared without case, spaces or punctuation."""
    out = str(name).strip().lower()
    for ch in CODEC_PUNCTUATION:
        out = out.replace(ch, "")
    return out


BY_KEY = {codec_key(name): name for name in CODECS}
assert len(BY_KEY) == len(CODECS), "two codec names differ only in punctuation"


def canonical_codec(name: str) -> str:
    """The CODECS key for a codec name, whatever its case or punctuation; ValueError if unknown."""
    key = BY_KEY.get(codec_key(name))
    if key is None:
        raise ValueError(f"unknown codec {name!r}; known codecs: {known_codecs()}")
    return key


def assumptions(codec: str) -> list[str]:
    """What a score of a call with ``codec`` assumes beyond G.107/G.107.1, in sentences."""
    c = CODECS[canonical_codec(codec)]
    notes = []
    if canonical_codec(codec).startswith("EVS"):
        notes.append(f"EVS: G.113 publishes no Ie,WB or Bpl,WB for EVS-WB; scored with AMR-WB 12.65's "
                     f"Ie,WB {c.ie:g} and Bpl {c.bpl:g}, which understates EVS (3GPP TR 26.952 finds it at "
                     "least as good)")
    if canonical_codec(codec) in ("AMR-NB", "AMR-NB-12.2"):
        notes.append(f"AMR-NB: Ie {c.ie:g} is G.113's GSM-EFR row (the same algorithm); Bpl {c.bpl:g} is "
                     "opencem's choice, as G.113 publishes none")
    if c.band == "wb":
        notes.append("wideband: the G.107 delay impairments are carried onto the G.107.1 scale by 1.29 "
                     "(G.107.1's own Id,WB equations were not available to check)")
    return notes


def _codec_columns(codec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ie, Bpl and the wideband flag per row; missing codecs (None/NaN/'') give NaN."""
    names = np.asarray(codec, dtype=object).astype(str)
    uniq, inverse = np.unique(names, return_inverse=True)
    missing = {"None", "nan", ""}
    unknown = [u for u in uniq if codec_key(u) not in BY_KEY and u not in missing]
    if unknown:
        raise ValueError(f"unknown codec {', '.join(repr(str(u)) for u in unknown)}; "
                         f"known codecs: {known_codecs()}")
    none = CodecImpairment("nb", math.nan, math.nan)
    table = [CODECS[BY_KEY[codec_key(u)]] if u not in missing else none for u in uniq]
    ie = np.array([c.ie for c in table])[inverse].reshape(names.shape)
    bpl = np.array([c.bpl for c in table])[inverse].reshape(names.shape)
    wideband = np.array([c.band == "wb" for c in table])[inverse].reshape(names.shape)
    return ie, bpl, wideband


def _as_float(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def emodel(one_way_delay_ms, packet_loss_pct, codec="AMR-WB", burst_ratio=1.0,
           **overrides) -> dict:
    """R, MOS and the E-model components for calls; inputs may be scalars or NumPy arrays.

    one_way_delay_ms: mouth-to-ear delay, ms (Ta; T = Ta and Tr = 2 Ta unless T=/Tr= given);
    packet_loss_pct: 0..100; codec: a CODECS name or an array of them; burst_ratio: G.107
    BurstR (1 = random loss; missing values count as 1); overrides: G107Parameters fields.
    Returns r (codec's scale), r_nb (narrowband-equivalent), mos, band, Ro, Is, Id, Idte,
    Idle, Idd, Ie_eff; floats when every input is a scalar, arrays otherwise.
    """
    row = {k: _as_float(overrides.pop(k)) for k in ROW_OVERRIDES if k in overrides}
    k = fixed(parameters(**overrides))
    ta = _as_float(one_way_delay_ms)
    ppl = _as_float(packet_loss_pct)
    burst = _as_float(burst_ratio)
    burst = np.where(np.isnan(burst), 1.0, burst)
    ie, bpl, wideband = _codec_columns(codec)
    shape = np.broadcast_shapes(ta.shape, ppl.shape, burst.shape, ie.shape,
                                *(v.shape for v in row.values()))
    with np.errstate(invalid="ignore"):  # NaN inputs give NaN outputs, quietly
        out = rating(numpy_ops(), k, ta, row.get("T", ta), row.get("Tr", 2 * ta), ppl, burst,
                     ie, bpl, wideband)
        out["mos"] = mos_of(numpy_ops(), out["r"], wideband)
    out["r_nb"] = out["r"] * np.where(wideband, 1 / WB_SCALE, 1.0)
    out["band"] = np.where(wideband, "wb", "nb")
    # + 0.0 turns the -0.0 of Idte at T = 0 into 0.0 for display.
    result = {name: np.broadcast_to(value if name == "band" else value + 0.0, shape)
              for name, value in out.items()}
    if shape == ():
        return {name: (str(v) if name == "band" else float(v)) for name, v in result.items()}
    return {name: v.copy() for name, v in result.items()}


def r_factor(one_way_delay_ms, packet_loss_pct, codec="AMR-WB", burst_ratio=1.0, **overrides):
    """Transmission rating R on the codec's own scale (G.107 for 'nb', G.107.1 for 'wb').

    Same inputs as `emodel`; vectorised over NumPy arrays. Compare R across bands only
    after `r_narrowband_equivalent`, or compare MOS.
    """
    return emodel(one_way_delay_ms, packet_loss_pct, codec, burst_ratio, **overrides)["r"]


def _wideband_flags(band) -> np.ndarray:
    bands = np.asarray(band, dtype=object).astype(str)
    bad = sorted(set(np.unique(bands)) - {"nb", "wb"})
    if bad:
        raise ValueError(f"band must be 'nb' or 'wb', not {', '.join(repr(str(b)) for b in bad)}")
    return bands == "wb"


def r_narrowband_equivalent(r, band="nb"):
    """R on the narrowband scale: R itself for 'nb', R/1.29 for 'wb' (G.107.1 Annex A)."""
    value = _as_float(r) * np.where(_wideband_flags(band), 1 / WB_SCALE, 1.0)
    return float(value) if value.ndim == 0 else value


def mos_from_r(r, band="nb"):
    """MOS (1..4.5) from R on the band's scale: G.107 Annex B, or G.107.1 Annex A for 'wb'."""
    with np.errstate(invalid="ignore"):
        value = mos_of(numpy_ops(), _as_float(r), _wideband_flags(band))
    return float(value) if np.ndim(value) == 0 else value


def emodel_call(one_way_delay_ms: float, packet_loss_pct: float, codec: str = "AMR-WB",
                burst_ratio: float = 1.0, **overrides: float) -> dict:
    """:func:`emodel` for one call in plain floats, through :class:`ScalarOps` (no NumPy):
    the same formulas, so both give the same values (tested)."""
    c = CODECS[canonical_codec(codec)]
    t, tr = overrides.pop("T", None), overrides.pop("Tr", None)
    k = fixed(parameters(**overrides))
    ta = float(one_way_delay_ms)
    wideband = c.band == "wb"
    out = rating(ScalarOps, k, ta, ta if t is None else float(t), 2 * ta if tr is None else float(tr),
                 float(packet_loss_pct), float(burst_ratio), c.ie, c.bpl, wideband)
    out["mos"] = mos_of(ScalarOps, out["r"], wideband)
    out["r_nb"] = out["r"] * (1 / WB_SCALE if wideband else 1.0)
    out["band"] = c.band
    return {key: v if key == "band" else v + 0.0 for key, v in out.items()}
