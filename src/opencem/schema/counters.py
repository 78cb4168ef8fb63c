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
    # opencem's meaning, the denominator of erab_drop_pct; TS 32.425 4.2.2.6 counts only the
    # abnormal ones under this name (docs/indicators-library.md).
    "ERAB.RelActNbr": CounterInfo("count", "count", "E-RAB releases while data was in flight"),
    "ERAB.RelAbnormalEnbAct": CounterInfo(
        "count", "count", "Abnormal E-RAB releases by the eNodeB with data in flight (drops)"),
    "ERAB.SessionTimeUE": CounterInfo(
        "s", "time", "In-session activity time of the UEs: E-RAB session time (TS 32.425 4.2.4.1)"),
    "DRB.UEThpVolDl": CounterInfo(
        "kbit", "volume", "Downlink volume counted for UE throughput (last TTI excluded)"),
    "DRB.UEThpTimeDl": CounterInfo(
        "ms", "time", "Downlink transmission time counted for UE throughput"),
    "RRU.PrbTotDl": CounterInfo("%", "mean", "Mean downlink PRB utilisation (TS 32.425 4.5.3)"),
    "RRC.ConnMean": CounterInfo("UE", "mean", "Mean number of RRC-connected UEs (TS 32.425 4.1.3.1)"),
    "HO.ExeAtt": CounterInfo("count", "count", "Outgoing handover execution attempts"),
    "HO.ExeSucc": CounterInfo("count", "count", "Successful outgoing handover executions"),
    "RRU.CellUnavailableTime": CounterInfo("s", "time", "Time the cell was unavailable (TS 32.425 4.5.6)"),
    "S1SIG.ConnEstabAtt": CounterInfo(
        "count", "count", "UE-associated S1 signalling connection establishment attempts (TS 32.425 4.6.1.1)"),
    "S1SIG.ConnEstabSucc": CounterInfo(
        "count", "count", "Successful UE-associated S1 signalling connection establishments (TS 32.425 4.6.1.2)"),
    "QF.EstabAttNbr": CounterInfo("count", "count", "NR QoS flow setup attempts (TS 28.552 5.1.1.13.3.1)"),
    "QF.EstabSuccNbr": CounterInfo("count", "count", "Successful NR QoS flow setups (TS 28.552 5.1.1.13.3.2)"),
}
