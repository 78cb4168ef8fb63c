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
    "RRC.ConnEstabAtt": CounterInfo("count", "count", "RRC connection establishment attempts"),
    "RRC.ConnEstabSucc": CounterInfo("count", "count", "Successful RRC connection establishments"),
    "ERAB.EstabInitAttNbr": CounterInfo("count", "count", "Initial E-RAB setup attempts"),
    "ERAB.EstabInitSuccNbr": CounterInfo("count", "count", "Successful initial E-RAB setups"),
    "ERAB.RelActNbr": CounterInfo("count", "count", "E-RAB releases while data was in flight"),
    "ERAB.RelAbnormalEnbAct": CounterInfo(
        "count", "count", "Abnormal E-RAB releases by the eNodeB with data in flight (drops)"),
    "DRB.UEThpVolDl": CounterInfo(
        "kbit", "volume", "Downlink volume counted for UE throughput (last TTI excluded)"),
    "DRB.UEThpTimeDl": CounterInfo(
        "ms", "time", "Downlink transmission time counted for UE throughput"),
    "RRU.PrbTotDl": CounterInfo("%", "mean", "Mean downlink PRB utilisation"),
    "RRC.ConnMean": CounterInfo("UE", "mean", "Mean number of RRC-connected UEs"),
    "HO.ExeAtt": CounterInfo("count", "count", "Outgoing handover execution attempts"),
    "HO.ExeSucc": CounterInfo("count", "count", "Successful outgoing handover executions"),
    "RRU.CellUnavailableTime": CounterInfo("s", "time", "Time the cell was unavailable"),
}
