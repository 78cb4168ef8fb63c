"""The canonical data model is consistent and its documentation is current."""

from pathlib import Path

import pyarrow as pa

from opencem.schema import TABLES, description_of, unit_of
from opencem.schema.docs import render_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-model.md"


def test_every_table_has_keys_time_column_and_described_columns():
    for name, spec in TABLES.items():
        names = spec.schema.names
        assert len(set(names)) == len(names), name
        for k in spec.keys:
            assert k in names, (name, k)
            assert not spec.schema.field(k).nullable, (name, k)
        if spec.time_column:
            assert pa.types.is_timestamp(spec.schema.field(spec.time_column).type)
        for f in spec.columns:
            assert description_of(f), (name, f.name)
        for col in spec.ranges:
            assert col in names, (name, col)


def test_columns_named_with_a_unit_suffix_declare_that_unit():
    suffix_unit = {"_ms": "ms", "_dbm": "dBm", "_kbps": "kbps", "_pct": "%", "_s": "s", "_db": "dB"}
    for spec in TABLES.values():
        for f in spec.columns:
            for suffix, unit in suffix_unit.items():
                if f.name.endswith(suffix):
                    assert unit_of(f) == unit, (spec.name, f.name)


def test_data_model_doc_is_generated_from_the_schema():
    assert DOC.read_text() == render_markdown(), "run `make docs` to regenerate docs/data-model.md"
