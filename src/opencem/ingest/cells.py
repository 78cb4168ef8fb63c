"""Cell identity: the key a PM object's cell gets in ``pm_counters.cell_id``.

PM readers report a cell by its RDN value (``EUtranCellFDD=1`` -> ``1``, ``LNCEL-1`` -> ``1``),
which vendors number per managed element: every gNB has a cell 1. Ingest turns it into a key
unique across the network:

1. the inventory's ``cell_id`` when the cells inventory (the committed snapshot plus cells loaded
   earlier in the same ingest call) has a cell with the same ``managed_element`` and the same
   local cell id (its ``local_cell_id``, or its ``cell_id`` when that is null), and, when the DN's
   cell class tells the technology (EUtranCell*, LNCEL: 4G; NRCell*, NRCELL: 5G), the same
   ``technology``;
2. otherwise the derived key ``<managed_element>/<family>=<value>``, where the family is the
   cell class, except that NRCellCU and NRCellDU fold into ``NRCell``: the CU-side and DU-side
   counters of one gNB describe the same NR cell (``seliitdus00487/NRCell=1``). A cell under a
   function other than the node's first (``GNBDUFunction=2``: a node with two DUs, each with its
   own ``NRCellDU=1``) keeps that function in its key, folded the same way (``GNBDUFunction``,
   ``GNBCUCPFunction`` and ``GNBCUUPFunction`` are ``GNB``): ``me1/GNB=2/NRCell=1``. A node has one
   eNodeB (RNC, BSC) function, which never enters the key.

The inventory's ``local_cell_id`` may also be written as the key's part after
``<managed_element>/`` (``EUtranCellTDD=1``, ``GNB=2/NRCell=1``): it then matches exactly that
cell. A bare value matches cells under the node's first function only, and only when it is
unambiguous: two PM cells with different keys (an ``EUtranCellFDD=1`` and an ``EUtranCellTDD=1``
of one node, both 4G) that would take the same inventory cell keep their derived keys, and
ingest says so (:meth:`CellInventory.take_notes`), instead of adding two cells' counters up.

The derived key is stable (the same file always gives the same key), so loading the inventory
later and loading the PM files again (``opencem ingest --reload``) re-keys them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .dn import cell_classes, families, function_parts

_KEYS = ("managed_element", "local", "technology")


class CellInventory:
    """The cells PM objects are matched against, by (managed element, local cell id, technology)."""

    def __init__(self) -> None:
        self.cell_ids: set[str] = set()
        self._rows: list[pa.Table] = []
        self._index: pa.Table | None = None
        self._assigned: dict[str, str] = {}  # inventory cell_id -> the derived key keyed to it
        self._pending: dict[str, str] = {}   # the same for the file being read
        self._refused: set[str] = set()      # inventory cells several PM cells would take
        self._notes: dict[str, str] = {}     # inventory cell_id -> why PM cells were not keyed to it

    def add(self, cells: pa.Table) -> None:
        """Cells of a snapshot (CELLS columns; ``local_cell_id`` may be absent in older files)."""
        if cells.num_rows == 0:
            return
        self.cell_ids.update(cells.column("cell_id").to_pylist())
        local = cells.column("local_cell_id") if "local_cell_id" in cells.column_names else None
        ids = cells.column("cell_id")
        me = (cells.column("managed_element") if "managed_element" in cells.column_names
              else pa.nulls(cells.num_rows, pa.string()))
        tech = (cells.column("technology") if "technology" in cells.column_names
                else pa.nulls(cells.num_rows, pa.string()))
        self._rows.append(pa.table({"managed_element": me.cast(pa.string()),
                                    "local": ids if local is None else pc.coalesce(local, ids),
                                    "technology": tech.cast(pa.string()), "inventory_id": ids}))
        self._index = None

    def __bool__(self) -> bool:
        return bool(self.cell_ids)

    def key_cells(self, pm: pa.Table) -> pa.Table:
        """``pm`` (PM_COUNTERS rows from a PM reader, ``cell_id`` the local cell id) with
        ``cell_id`` replaced by the cell key (module notes)."""
        if pm.num_rows == 0 or pm["cell_id"].null_count == pm.num_rows:
            return pm
        dns = pc.dictionary_encode(pm["object_dn"].combine_chunks())
        codes = dns.indices.to_numpy(zero_copy_only=False)
        first = np.full(len(dns.dictionary), -1, np.int64)
        first[codes[::-1]] = np.arange(len(codes))[::-1]  # first row of each object
        uniq = pm.take(pa.array(first))
        family, tech = families(cell_classes(uniq["object_dn"]))
        family = pc.coalesce(family, pa.scalar("Cell"))
        me, local = uniq["managed_element"].combine_chunks(), uniq["cell_id"].combine_chunks()
        function = function_parts(uniq["object_dn"])  # "GNB=2/" under a second function, else ""
        qualified = pc.binary_join_element_wise(function, family, "=", local, "")
        derived = pc.binary_join_element_wise(pc.if_else(pc.is_valid(me), pc.binary_join_element_wise(me, "/", ""),
                                                         pa.scalar("")), qualified, "")
        bare = pc.if_else(pc.equal(function, ""), local, pa.scalar(None, pa.string()))
        matched = self._match(me, qualified, bare, tech)
        key = pc.coalesce(self._unambiguous(matched, derived), derived)
        key = pc.if_else(pc.is_valid(local), key, pa.scalar(None, pa.string()))
        return pm.set_column(pm.column_names.index("cell_id"), "cell_id", key.take(dns.indices))

    def _unambiguous(self, matched: pa.Array, derived: pa.Array) -> pa.Array:
        """``matched`` where the inventory cell takes one derived key (in this file and the
        earlier files of this call), else null, with a note for each inventory cell refused."""
        ids, keys = matched.to_pylist(), derived.to_pylist()
        taken: dict[str, set[str]] = {}
        for cell, key in zip(ids, keys):  # one entry per measured object, not per row
            if cell is not None and key is not None:
                taken.setdefault(cell, set()).add(key)
        for cell, found in taken.items():
            before = self._assigned.get(cell) or self._pending.get(cell)
            if cell in self._refused or len(found | {before} - {None}) > 1:
                self._refused.add(cell)
                keys_ = sorted(found | {before} - {None})
                local = [k.split("/", 1)[-1] for k in keys_]
                self._notes[cell] = (
                    f"PM cells {', '.join(keys_)} all match inventory cell {cell} by managed_element and "
                    f"local_cell_id, so {'only ' + before + ' (an earlier file) is' if before else 'none is'} keyed "
                    f"to it; write its local_cell_id as one of {', '.join(local)} to say which it is, then "
                    "opencem ingest --reload these PM files")
            else:
                self._pending[cell] = before or next(iter(found))
        return pa.array([None if c in self._refused and self._assigned.get(c) != k else c
                         for c, k in zip(ids, keys)], pa.string())

    def file_done(self, loaded: bool) -> None:
        """End of one PM file: keep (``loaded``) or forget the inventory cells it keyed to."""
        if loaded:
            self._assigned.update(self._pending)
        self._pending = {}

    def take_notes(self) -> list[str]:
        """Sentences on inventory cells PM cells were not keyed to since the last call."""
        notes, self._notes = list(self._notes.values()), {}
        return notes

    def _match(self, me: pa.Array, qualified: pa.Array, bare: pa.Array, tech: pa.Array) -> pa.Array:
        """The inventory cell_id of each PM cell, or null: the inventory's local_cell_id equal to
        the ``qualified`` key part (EUtranCellTDD=1), else to the ``bare`` value with the same
        technology (or a unique cell of that value when the DN's class tells no technology)."""
        index = self._inventory()
        if index is None:
            return pa.nulls(len(me), pa.string())
        # Cells alone with their (managed element, local id): what a qualified id or a DN whose
        # class tells no technology (a CSV export's "Cell") may match.
        counts = index.group_by(["managed_element", "local"], use_threads=False).aggregate([("inventory_id", "count")])
        unique = index.join(counts.filter(pc.equal(counts["inventory_id_count"], 1)),
                            ["managed_element", "local"], join_type="inner", use_threads=False)
        probe = pa.table({"managed_element": me, "local": qualified, "_i": pa.array(np.arange(len(me)))})
        named = probe.join(unique.select(["managed_element", "local", "inventory_id"]).rename_columns(
            ["managed_element", "local", "named_id"]), ["managed_element", "local"], join_type="left outer",
            use_threads=False).sort_by("_i")
        probe = pa.table({"managed_element": me, "local": bare, "technology": tech, "_i": pa.array(np.arange(len(me)))})
        exact = probe.join(index, list(_KEYS), join_type="left outer", use_threads=False)
        loose = probe.join(unique.select(["managed_element", "local", "inventory_id"]).rename_columns(
            ["managed_element", "local", "loose_id"]), ["managed_element", "local"], join_type="left outer",
            use_threads=False)
        exact = exact.sort_by("_i")
        loose = loose.sort_by("_i")
        loose_id = pc.if_else(pc.is_null(tech), loose["loose_id"], pa.scalar(None, pa.string()))
        return pc.coalesce(named["named_id"], exact["inventory_id"], loose_id).combine_chunks()

    def _inventory(self) -> pa.Table | None:
        if self._index is None and self._rows:
            rows = pa.concat_tables(self._rows)
            rows = rows.filter(pc.is_valid(rows["managed_element"]))
            # One cell per key: a snapshot repeated (earlier batches, this call) counts once.
            grouped = rows.group_by(list(_KEYS), use_threads=False).aggregate([("inventory_id", "min")])
            self._index = grouped.select([*_KEYS, "inventory_id_min"]).rename_columns([*_KEYS, "inventory_id"])
        return self._index
