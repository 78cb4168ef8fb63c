"""Reader for drive-test logs in the G-NetTrack Pro CSV layout: one CSV per test run, loose or zipped.

The layout is the one of the UCC 5G production dataset (Raca et al., MMSys 2020): one row per
sample (about one a second), ``-`` where the phone reported nothing, the phone's local time. A
zip is read member by member in memory, never extracted; its folders give the service and the
scenario (``<Service>/<Static|Driving>/.../<run>.csv``) and the member path gives the test_id.

Choices, so that loaded rows mean what the canonical table says:

- measured_at: the Timestamp is local time in ``local_tz`` (Europe/Dublin: GMT in winter, IST =
  UTC+1 in summer), stored in UTC. In the hour repeated when summer time ends the earlier
  instant is taken; a time skipped when it starts becomes the moment of the change.
- cell_id: RAWCELLID, the full cell identity (LTE: eNB id x 256 + cell; UTRAN: RNC x 65536 + CI).
  CellID is only the cell within its site and repeats across sites. Without a RAWCELLID column
  CellID is used.
- rsrp_dbm, rsrq_db: null on 2G/3G samples, where the RSRP and RSRQ columns hold RSCP/RxLev and
  Ec/No (SNR and CQI are ``-`` there), so that they are never mixed with LTE RSRP.
- nr_rsrp_dbm, nr_rsrq_db: null. NRxRSRP/NRxRSRQ are the neighbouring cells' RSRP/RSRQ (the same
  columns exist in the group's LTE-only 2017 dataset), not the NR leg of a 5G connection.
- record_number: the data line within the CSV (line 2 is record 1); blank and rejected lines
  leave gaps, so a record can always be found in its file.
- row numbers (``Part.row_numbers``, ``Reject.row_number``): unique within the zip: the data
  lines of the members before it, in the zip's directory order, plus record_number. The UCC zip
  numbers 1..188,711. A Reject's record_text starts with ``<member>:<line>: ``.

Lines with the wrong number of fields, a Timestamp not in ``YYYY.MM.DD_HH.MM.SS`` form or text
where a number belongs become Rejects; ranges are left to ingest's validation.
"""

from __future__ import annotations

import codecs
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..geo import h3_cells
from ..schema.base import TIMESTAMP
from ..schema.network import DRIVE_TESTS
from .parts import Part, Reject
from .validate import IngestError

LOCAL_TZ = "Europe/Dublin"
TIME_FORMAT = "%Y.%m.%d_%H.%M.%S"
H3_RESOLUTION = 9  # the resolution of drive_tests.h3_index
REQUIRED = ("Timestamp", "Longitude", "Latitude")
# Source column -> canonical column; values are numbers, '-' or empty for none.
NUMBERS = {
    "Latitude": "lat", "Longitude": "lon", "Speed": "speed_kmh", "RSRP": "rsrp_dbm",
    "RSRQ": "rsrq_db", "SNR": "sinr_db", "CQI": "cqi", "RSSI": "rssi_dbm",
    "DL_bitrate": "dl_throughput_kbps", "UL_bitrate": "ul_throughput_kbps",
    "PINGAVG": "ping_avg_ms", "PINGLOSS": "ping_loss_pct",
}
TEXTS = {"Operatorname": "operator", "State": "state"}
CELL_COLUMNS = ("RAWCELLID", "CellID")  # first present wins
SOURCE_COLUMNS = ("Timestamp", "NetworkMode", *NUMBERS, *TEXTS, *CELL_COLUMNS)
# NetworkMode as G-NetTrack reports it (upper case) -> technology.
TECHNOLOGY = {
    "5G": "5G", "NR": "5G", "NR5G": "5G",
    "LTE": "4G", "LTE-A": "4G", "LTE_CA": "4G", "4G": "4G",
    "HSPA+": "3G", "HSPA": "3G", "HSDPA": "3G", "HSUPA": "3G", "UMTS": "3G", "WCDMA": "3G",
    "TD-SCDMA": "3G", "3G": "3G",
    "EDGE": "2G", "GPRS": "2G", "GSM": "2G", "2G": "2G",
}
SCENARIOS = ("static", "driving")  # folder names that give the scenario; the one above is the service
_NUMBER_RE = r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"


@dataclass(frozen=True)
class _Run:
    """What a CSV's path says about the test run it holds."""

    test_id: str
    service: str | None = None
    scenario: str | None = None


@dataclass
class _Member:
    data: pa.Table  # canonical columns except h3_index
    row_numbers: np.ndarray
    rejects: list[Reject]
    lines: int  # data lines, blank and rejected ones included


def read_drive_test_zip(path: str | Path, *, local_tz: str = LOCAL_TZ) -> list[Part]:
    """Read every CSV in a zip of G-NetTrack drive-test logs into one ``drive_tests`` Part.

    Folders and files starting with ``.`` or ``__MACOSX`` and non-CSV members are skipped. Times
    are read in ``local_tz`` and stored in UTC; throughput is in kbps, levels in dBm, quality in dB.
    Raises IngestError when the zip, or a CSV in it, cannot be read at all.
    """
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise IngestError(f"{path}: no such file.") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise IngestError(f"{path}: not a readable zip archive ({exc}).") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and _is_csv(m.filename)]
        if not members:
            raise IngestError(f"{path}: the zip archive holds no CSV files.")
        runs = _runs([m.filename for m in members])
        parts, offset = [], 0
        for info, run in zip(members, runs):
            where = f"{path}, member {info.filename}"
            try:
                data = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
                    NotImplementedError) as exc:
                raise IngestError(f"{path}: member {info.filename} cannot be read ({exc}).") from None
            member = _read_member(data, where, info.filename, run, offset, local_tz)
            offset += member.lines
            parts.append(member)
    return [_part(parts)]


def read_drive_test_csv(source: str | Path | bytes, test_id: str | None = None, *,
                        service: str | None = None, scenario: str | None = None,
                        local_tz: str = LOCAL_TZ) -> list[Part]:
    """Read one G-NetTrack drive-test CSV (a path or its bytes) into a ``drive_tests`` Part.

    For a path, test_id, service and scenario default to what the path says (see the module
    notes; test_id falls back to the file name without ``.csv``); for bytes, test_id is required.
    Row numbers are record numbers. Raises IngestError when the file cannot be read at all.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if test_id is None:
            raise ValueError("test_id is required when reading CSV bytes")
        data, where, label, run = bytes(source), f"drive-test CSV {test_id}", test_id, _Run(test_id)
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IngestError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
        where, label = str(path), path.name
        run = _run(path.parts, fallback=path.stem)
    run = _Run(test_id or run.test_id, service or run.service, scenario or run.scenario)
    return [_part([_read_member(data, where, label, run, 0, local_tz)])]


def _part(members: Sequence[_Member]) -> Part:
    table = pa.concat_tables([m.data for m in members])
    table = table.append_column("h3_index", _h3_index(table["lat"], table["lon"]))
    row_numbers = np.concatenate([m.row_numbers for m in members])
    rejects = sorted((r for m in members for r in m.rejects), key=lambda r: r.row_number)
    return Part(DRIVE_TESTS.name, table, row_numbers, rejects)


# --- paths -------------------------------------------------------------------------------------

def _is_csv(name: str) -> bool:
    parts = PurePosixPath(name).parts
    junk = any(p.startswith((".", "__MACOSX")) for p in parts)
    return bool(parts) and not junk and parts[-1].lower().endswith(".csv")


def _run(parts: Sequence[str], fallback: str) -> _Run:
    """test_id from the service folder down (``Download/Static/B_2019.12.16_13.40.04``) when one
    of the three folders above the file is Static or Driving, else ``fallback``."""
    folders = list(parts[:-1])
    at = next((i for i in range(len(folders) - 1, max(len(folders) - 4, -1), -1)
               if folders[i].lower() in SCENARIOS), None)
    if at is None:
        return _Run(fallback)
    name = "/".join([*folders[max(at - 1, 0):], parts[-1]])
    service = _slug(folders[at - 1]) if at > 0 else None
    return _Run(name[:-4] if name.lower().endswith(".csv") else name, service, folders[at].lower())


def _runs(names: Sequence[str]) -> list[_Run]:
    runs = [_run(PurePosixPath(n).parts, fallback=n[:-4]) for n in names]
    if len({r.test_id for r in runs}) < len(runs):
        # Same service/scenario paths under different roots: keep the whole member path.
        runs = [_Run(n[:-4], r.service, r.scenario) for n, r in zip(names, runs)]
    return runs


def _slug(folder: str) -> str:
    return folder.strip().lower().replace(" ", "_").replace("-", "_")


# --- one CSV -----------------------------------------------------------------------------------

def _read_member(data: bytes, where: str, label: str, run: _Run, offset: int, local_tz: str) -> _Member:
    """Parse one CSV; ``offset`` is added to record numbers to give row numbers."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = _Lines(data)
    if lines.count == 0:
        return _Member(_columns({}, 0, np.empty(0, np.int64), run), np.empty(0, np.int64), [], 0)
    table, record, rejects = _parse(lines, where, label, offset)
    raw = {c: pc.utf8_trim_whitespace(table[c]) for c in table.column_names}

    checks = _Checks(raw, record, offset, lambda i: lines.record(label, i))
    naive = pc.strptime(raw["Timestamp"], format=TIME_FORMAT, unit="s", error_is_null=True)
    checks.reject(naive.is_null().to_numpy(zero_copy_only=False), "Timestamp", _bad_time)
    values = {}
    for source, name in NUMBERS.items():
        if source in raw:
            values[name], bad = _numbers(raw[source])
            checks.reject(bad, source, lambda v, s=source: f"has {s} {v!r}, which is not a number")
    values["measured_at"] = pc.assume_timezone(naive, local_tz, ambiguous="earliest",
                                               nonexistent="latest").cast(TIMESTAMP)
    values.update({name: raw[source] for source, name in TEXTS.items() if source in raw})
    cell = next((c for c in CELL_COLUMNS if c in raw), None)
    if cell:
        values["cell_id"] = raw[cell]
    if "NetworkMode" in raw:
        values["technology"] = _technology(raw["NetworkMode"])
        legacy = pc.is_in(values["technology"], pa.array(["2G", "3G"])).fill_null(False)
        for name in ("rsrp_dbm", "rsrq_db"):
            if name in values:
                values[name] = pc.if_else(legacy, pa.scalar(None, pa.float64()), values[name])

    table = _columns(values, table.num_rows, record, run)
    keep = ~checks.failed
    if not keep.all():
        table, record = table.filter(pa.array(keep)), record[keep]
    return _Member(table, offset + record, rejects + checks.rejects, lines.count - 1)


def _parse(lines: _Lines, where: str, label: str, offset: int) -> tuple[pa.Table, np.ndarray, list[Reject]]:
    """The source columns we use as text (``-`` and empty as null), the record_number of each row,
    and Rejects for lines with the wrong number of fields."""
    try:
        names = [h.strip() for h in lines.text(0, strict=True).split(",")]
    except UnicodeDecodeError:
        raise IngestError(f"{where}: the header is not UTF-8 text.") from None
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        found = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise IngestError(f"{where}: lacks column(s) {', '.join(map(repr, missing))} of the "
                          f"G-NetTrack drive-test layout (found: {found}).")
    fields = lines.fields()
    blank = lines.lengths() == 0
    malformed = ~blank & (fields != len(names))
    good = ~blank & ~malformed
    malformed[0] = good[0] = False  # the header
    rejects = [Reject(offset + int(i), f"has {fields[i]} fields, expected {len(names)}",
                      lines.record(label, i)) for i in np.flatnonzero(malformed)]
    wanted = [c for c in SOURCE_COLUMNS if c in names]
    try:
        table = pacsv.read_csv(
            pa.py_buffer(lines.data),
            # One thread: members are small, and threads only add start-up time and memory.
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=False),
            # No quoting, so that a record is exactly a line, as counted above.
            parse_options=pacsv.ParseOptions(quote_char=False, invalid_row_handler=lambda row: "skip"),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in wanted}, include_columns=wanted,
                null_values=["-", ""], strings_can_be_null=True))
    except pa.ArrowInvalid as exc:
        raise IngestError(f"{where}: cannot be parsed as CSV ({str(exc).splitlines()[0]}).") from None
    record = np.flatnonzero(good)
    if table.num_rows != len(record):
        raise IngestError(f"{where}: has {table.num_rows} parsed rows for {len(record)} well-formed "
                          "lines, so records cannot be matched to lines.")
    return table, record, rejects


class _Lines:
    """Line boundaries of a CSV text (``\\n`` endings, no quoting), found with NumPy."""

    def __init__(self, data: bytes):
        self.data = data
        buf = np.frombuffer(data, np.uint8)
        newlines = np.flatnonzero(buf == ord("\n"))
        self.starts = np.concatenate(([0], newlines + 1))
        self.ends = np.concatenate((newlines, [len(buf)]))
        if len(buf) == 0 or buf[-1] == ord("\n"):  # nothing after the final newline
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]
        self._commas = np.flatnonzero(buf == ord(","))

    @property
    def count(self) -> int:
        return len(self.starts)

    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def fields(self) -> np.ndarray:
        commas = np.searchsorted(self._commas, self.ends) - np.searchsorted(self._commas, self.starts)
        return commas + 1

    def text(self, i: int, strict: bool = False) -> str:
        return self.data[self.starts[i]:self.ends[i]].decode("utf-8", "strict" if strict else "replace")

    def record(self, label: str, i: int) -> str:
        """The raw line, prefixed with where it is: ``<member>:<line>: ``."""
        return f"{label}:{i + 1}: {self.text(i)}"


class _Checks:
    """Rows that fail a check become Rejects; the first failed check of a row is the one kept."""

    def __init__(self, raw: dict[str, pa.ChunkedArray], record: np.ndarray, offset: int, text):
        self.raw, self.record, self.offset, self.text = raw, record, offset, text
        self.failed = np.zeros(len(record), bool)
        self.rejects: list[Reject] = []

    def reject(self, mask: np.ndarray, source: str, reason) -> None:
        new = mask & ~self.failed
        if not new.any():
            return
        rows = np.flatnonzero(new)
        for i, value in zip(rows, self.raw[source].take(pa.array(rows)).to_pylist()):
            line = int(self.record[i])
            self.rejects.append(Reject(self.offset + line, reason(value), self.text(line),
                                       field=source, value=value))
        self.failed |= new


def _bad_time(value: str | None) -> str:
    return "has no Timestamp" if value is None else f"has Timestamp {value!r}, expected YYYY.MM.DD_HH.MM.SS"


def _numbers(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray]:
    """float64 values, and where a value was given but is not a number."""
    try:
        return pc.cast(column, pa.float64()), np.zeros(len(column), bool)
    except pa.ArrowInvalid:
        pass
    # Dirty column only: keep what parses, flag the rest.
    ok = pc.match_substring_regex(column, _NUMBER_RE)
    values = pc.cast(pc.if_else(ok, column, pa.scalar(None, pa.string())), pa.float64())
    return values, pc.invert(ok).fill_null(False).to_numpy(zero_copy_only=False)


def _technology(mode: pa.ChunkedArray) -> pa.ChunkedArray:
    known = pa.array(list(TECHNOLOGY))
    index = pc.index_in(pc.utf8_upper(mode), value_set=known)
    return pa.chunked_array([pa.array(list(TECHNOLOGY.values())).take(index.combine_chunks())])


def _columns(values: dict, n: int, record: np.ndarray, run: _Run) -> pa.Table:
    """The canonical columns but h3_index, in table order; absent values are nulls."""
    constant = lambda v: pa.repeat(pa.scalar(v, pa.string()), n)  # noqa: E731
    given = {"test_id": constant(run.test_id), "record_number": pa.array(record, pa.int64()),
             "service": constant(run.service), "scenario": constant(run.scenario)}
    columns = {}
    for f in DRIVE_TESTS.columns:
        if f.name == "h3_index":
            continue
        kind = pa.float64() if pa.types.is_floating(f.type) or f.name == "cqi" else f.type
        column = given.get(f.name, values.get(f.name))
        columns[f.name] = pa.nulls(n, kind) if column is None else column
    return pa.table(columns)


def _h3_index(lat: pa.ChunkedArray, lon: pa.ChunkedArray) -> pa.Array:
    """H3 cell of each exact position (no rounding: samples near hexagon edges must land in
    the cell their own lat/lon lie in); null where the position is missing or out of range."""
    return h3_cells(lat.to_numpy(), lon.to_numpy(), H3_RESOLUTION)
