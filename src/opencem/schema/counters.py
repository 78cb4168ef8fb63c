"""The canonical PM counter catalogue: 3GPP names (TS 32.425 / 28.552) with unit and kind.

Vendor dictionaries (``dictionaries/*.yaml``) map each vendor's counters onto these names;
everything downstream of ingestion only ever sees canonical names and units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CounterKind = Literal["count", "mean", "volume", "time"]


@dataclass(frozen=True)
class CounterInfo:
    """One canonical counter: its unit, how it aggregates (kind) and what it measures."""

    unit: str
    kind: CounterKind
    description: str


CANONICAL_COUNTERS: dict[str, CounterInfo] = {
    "RRC.ConnEstabAtt": CounterInfo(
        "count", "count", "RRC connection establishment attempts (TS 32.425 4.1.1.1; NR TS 28.552 5.1.1.15.1)"),
    "RRC.ConnEstabSucc": CounterInfo(
        "count", "count", "Successful RRC connection establishments (TS 32.425 4.1.1.2; NR TS 28.552 5.1.1.15.2)"),
    "ERAB.EstabInitAttNbr": CounterInfo("count", "count", "Initial E-RAB setup attempts (TS 32.425 4.2.1.1)"),
    "ERAB.EstabInitSuccNbr": CounterInfo("count", "count", "Successful initial E-RAB setups (TS 32.425 4.2.1.2)"),
    # TS 32.425 4.2.2.6: released E-RABs that had data in a buffer (continuous-flow E-RABs always
    # count), counted on releases except normal ones (MME "Normal Release"; eNB "User
    # inactivity", CSG expiry, CS fallback): the drops, whoever initiated them.
    "ERAB.RelActNbr": CounterInfo(
        "count", "count", "Abnormal releases of active E-RABs, eNB- or MME-initiated (TS 32.425 4.2.2.6)"),
    # opencem's name (Ericsson's pmErabRelAbnormalEnbAct): the eNB-initiated part of ERAB.RelActNbr.
    "ERAB.RelAbnormalEnbAct": CounterInfo(
        "count", "count", "Abnormal releases of active E-RABs initiated by the eNodeB (drops, RAN view)"),
    # opencem's name: no single TS 32.425 counter of every release was confirmed (erab_drop_pct's denominator).
    "ERAB.RelNbr": CounterInfo("count", "count", "E-RAB releases, normal and abnormal, whoever initiated them"),
    "ERAB.SessionTimeUE": CounterInfo(
        "s", "time", "In-session activity time of the UEs: E-RAB session time (TS 32.425 4.2.4.1)"),
    "DRB.UEThpVolDl": CounterInfo(
        "kbit", "volume", "Downlink volume counted for UE throughput (last TTI excluded)"),
    "DRB.UEThpTimeDl": CounterInfo(
        "ms", "time", "Downlink transmission time counted for UE throughput"),
    "RRU.PrbTotDl": CounterInfo("%", "mean", "Mean downlink PRB utilisation (TS 32.425 4.5.3)"),
    "RRC.ConnMean": CounterInfo("UE", "mean", "Mean number of RRC-connected UEs (TS 32.425 4.1.3.1)"),
    "HO.ExeAtt": CounterInfo("count", "count", "Outgoing handover execution attempts (the TS 32.450 6.5.1 term)"),
    "HO.ExeSucc": CounterInfo("count", "count", "Successful outgoing handover executions (the TS 32.450 6.5.1 term)"),
    "MM.HoExeIntraFreqReq": CounterInfo(
        "count", "count", "NR outgoing intra-frequency handover executions requested (TS 28.552 5.1.1.6.5.1)"),
    "MM.HoExeIntraFreqSucc": CounterInfo(
        "count", "count", "Successful NR outgoing intra-frequency handover executions (TS 28.552 5.1.1.6.5.2)"),
    "RRU.CellUnavailableTime": CounterInfo("s", "time", "Time the cell was unavailable (TS 32.425 4.5.6)"),
    "S1SIG.ConnEstabAtt": CounterInfo(
        "count", "count", "UE-associated S1 signalling connection establishment attempts (TS 32.425 4.6.1.1)"),
    "S1SIG.ConnEstabSucc": CounterInfo(
        "count", "count", "Successful UE-associated S1 signalling connection establishments (TS 32.425 4.6.1.2)"),
    "QF.EstabAttNbr": CounterInfo("count", "count", "NR QoS flow setup attempts (TS 28.552 5.1.1.13.3.1)"),
    "QF.EstabSuccNbr": CounterInfo("count", "count", "Successful NR QoS flow setups (TS 28.552 5.1.1.13.3.2)"),
    # TS 28.552 5.1.1.13.1.1 "released QoS flows that were active at the time of release"; that it
    # leaves normal releases out, as ERAB.RelActNbr does, is read from its E-RAB and DRB twins
    # (DRB.RelActNbr, 5.1.1.10.3, counts abnormal releases) and not confirmed from its own text.
    "QF.RelActNbr": CounterInfo(
        "count", "count", "Abnormal releases of active NR QoS flows, gNB- or AMF-initiated (TS 28.552 5.1.1.13.1.1)"),
    # opencem's names, the NR twins of ERAB.RelAbnormalEnbAct and ERAB.RelNbr.
    "QF.RelAbnormalGnbAct": CounterInfo(
        "count", "count", "Abnormal releases of active NR QoS flows initiated by the gNB (drops, RAN view)"),
    "QF.RelNbr": CounterInfo("count", "count", "NR QoS flow releases, normal and abnormal, whoever initiated them"),
}
