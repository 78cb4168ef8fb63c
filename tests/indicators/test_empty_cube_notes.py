"""``evaluate`` says in one sentence why a cube, or one source of it, came out empty, and each
sentence once however many cubes it concerns."""

from __future__ import annotations

import shutil
from datetime import date

from opencem.indicators.catalog import LIBRARY, load_catalog
from opencem.indicators.evaluate import evaluate
from opencem.ingest.load import ingest
from opencem.lake import Lake
from opencem.workspace import Workspace
from tests.conftest import PROJECT, external

ANONYMISED = ("3gpp-pm", "o-ran-sc", "A20230515.0700_0100-0715_0100_GNODEB-0.xml")
REAL = ("3gpp-pm", "o-ran-sc", "A20220418.1900-1915_seliitdus00487.xml")
INVENTORY = PROJECT / "examples" / "cells-inventory"


def notes_of(lake: Lake) -> list[str]:
    report = evaluate(lake, load_catalog(lake.tables))
    notes = report.notes()
    assert len(notes) == len(set(notes))
    return notes


def test_unmapped_counters_and_missing_inventory_are_named(tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest(lake, [external(*ANONYMISED)])
    notes = notes_of(lake)
    unmapped = [n for n in notes if "none of the counters its KPIs read" in n]
    assert unmapped == [
        "cube_cell_15min, cube_cell_day, cube_grid_hour, cube_city_day, cube_city_15min: pm_counters has rows but none of the "
        "counters its KPIs read (DRB.UEThpTimeDl, DRB.UEThpVolDl, ERAB.EstabInitAttNbr, ERAB.EstabInitSuccNbr "
        "and 18 more): the files' counters are not mapped to canonical names; check the vendor dictionary (opencem "
        "ingest lists the counters it did not map)"]
    assert not any("looked up" in n or "grid needs" in n for n in notes)  # no rows to look anything up for
    assert any(n.startswith("cube_subscriber_day, cube_segment_day, cube_device_model_day: nothing to evaluate: "
                            "none of its sources has rows (") for n in notes)


def test_a_missing_inventory_is_named_for_grid_and_city(tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest(lake, [external(*REAL)])
    notes = notes_of(lake)
    assert "cube_grid_hour: grid needs cells with lat/lon: the cells table is empty (load an inventory, " \
           "docs/ingest.md)" in notes
    assert "cube_city_day, cube_city_15min: city is looked up in cells by cell_id: the cells table is empty (load an "\
           "inventory, docs/ingest.md)" in notes
    assert "cube_cell_15min, cube_cell_day, cube_grid_hour: no rows in broadband_sessions, complaints, iot_events, " \
           "xdr_data and 2 more for these days, so their KPIs are empty" in notes


def test_an_inventory_that_does_not_know_the_pm_cells_is_named(tmp_path):
    lake = Lake(tmp_path / "lake")
    ingest(lake, [external(*REAL)])  # keys derived before the inventory came
    ingest(lake, [INVENTORY / "example_cells.csv"], mapping=INVENTORY / "mapping.yaml", as_of=date(2022, 4, 18))
    notes = notes_of(lake)
    assert "cube_city_day, cube_city_15min: city is looked up in cells by cell_id: none of the 6 cell_ids of " \
           "pm_counters is in cells (e.g. seliitdus00487/EUtranCellFDD=1)" in notes
    assert "cube_grid_hour: grid needs cells with lat/lon: none of the 6 cell_ids of pm_counters is in " \
           "cells (e.g. seliitdus00487/EUtranCellFDD=1)" in notes
    # The RAN KPIs themselves came out (availability), so pm_counters gets no sentence.
    assert not any("pm_counters has rows" in n or "pm_counters KPIs are all empty" in n for n in notes)
    ingest(lake, [external(*REAL)], reload=True)  # re-keyed: the lookups work and the note goes
    assert not any("city is looked up" in n for n in notes_of(lake))


def test_the_simulated_operator_gets_no_empty_cube_sentence(lake, tmp_path):
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(lake.root, ws.root / "lake")
    cat = load_catalog(ws.tables(), [LIBRARY / "dimensions.yaml", LIBRARY / "ran.yaml"], library=False)
    notes = evaluate(ws.lake, cat, only=["cube_cell_day", "cube_city_day", "cube_grid_hour"]).notes()
    assert notes == []
