"""Validation never loses a record: accepted + quarantined = read, whatever the values."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencem.ingest.validate import conform
from opencem.schema import TABLES

SPEC = TABLES["xdr_voice"]

text = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", " ", "NaN", "1e400", "-0"]))
number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(min_value=-(2**70), max_value=2**70).map(float))


@st.composite
def dirty_voice_tables(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    col = lambda strategy: draw(st.lists(strategy, min_size=n, max_size=n))  # noqa: E731
    return pa.table({
        "call_id": pa.array(col(text), pa.string()),
        "subscriber_id": pa.array(col(text), pa.string()),
        "start_time": pa.array(col(st.one_of(st.none(), st.text(max_size=25),
                                             st.sampled_from(["2026-11-02T10:00:00Z", "2026-13-40"]))),
                               pa.string()),
        "rsrp_dbm": pa.array(col(number), pa.float64()),
        "cqi": pa.array(col(st.one_of(st.none(), st.integers(-300, 300))), pa.int64()),
        "setup_success": pa.array(col(st.one_of(st.none(), st.sampled_from(["true", "false", "yes", "2"]))),
                                  pa.string()),
        "sip_cause_code": pa.array(col(text), pa.string()),
    })


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dirty_voice_tables())
def test_conform_conserves_records_and_explains_each_rejection(table):
    c = conform(table, SPEC, "fuzz.csv")
    assert c.accepted.num_rows + c.n_quarantined == table.num_rows
    assert c.accepted.schema.equals(SPEC.schema)
    assert len(set(c.rejected_rows.tolist())) == c.n_quarantined
    assert all(reason and field for reason, field in zip(c.reasons, c.fields))
    # What was accepted is valid: keys present, ranges respected.
    for name in ("call_id", "subscriber_id", "start_time", "setup_success"):
        assert c.accepted.column(name).null_count == 0
    for value in c.accepted.column("rsrp_dbm").to_pylist():
        assert value is None or -156 <= value <= -31
