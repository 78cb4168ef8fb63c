"""Network inventory, performance counters and alarms."""

import pyarrow as pa

from .base import TIMESTAMP, Table, col, key, location_h3

CELLS = Table(
    name="cells",
    domain="network",
    description="Radio cells and fixed-access OLTs with location; one row per cell (snapshot).",
    keys=("cell_id",),
    columns=(
        key("cell_id", "Cell identifier, unique across vendors (e.g. C000123-2-5G)"),
        key("site_id", "Site (eNodeB/gNodeB or OLT location) the cell belongs to"),
        col("managed_element", pa.string(), "OSS managed element name used in PM object DNs"),
        col("local_cell_id", pa.string(), "The cell's RDN value in PM object DNs (EUtranCellFDD=<this>, "
            "LNCEL-<this>), unique within its managed element; null: the same as cell_id"),
        col("technology", pa.string(), "4G, 5G or FTTH-OLT", nullable=False),
        col("vendor", pa.string(), "Equipment vendor", nullable=False),
        col("sector", pa.int8(), "Sector number on the site (1-3; 0 for OLTs)"),
        col("band_mhz", pa.int32(), "Carrier frequency band", "MHz"),
        col("lat", pa.float64(), "Site latitude (WGS84)", "deg"),
        col("lon", pa.float64(), "Site longitude (WGS84)", "deg"),
        col("azimuth_deg", pa.float32(), "Antenna azimuth, clockwise from north", "deg"),
        col("city", pa.string(), "City the site is in"),
        col("province", pa.string(), "Province / region"),
        col("h3_index", pa.string(), "H3 cell (resolution 8) of the site location"),
        col("time_zone", pa.string(), "Local time zone of the site (IANA name, e.g. Europe/Rome): the clock "
            "its customers live by; timestamps stay UTC"),
    ),
    ranges={"lat": (-90, 90), "lon": (-180, 180), "azimuth_deg": (0, 360)},
)

PM_COUNTERS = Table(
    name="pm_counters",
    domain="network",
    description="Performance-management counters in long format, canonical (3GPP) counter names.",
    keys=("object_dn", "period_start", "counter_name"),
    time_column="period_start",
    columns=(
        key("object_dn", "Measured object distinguished name (measObjLdn), e.g. "
            "ManagedElement=ME001,ENBFunction=1,EUtranCellFDD=C000001-1-4G"),
        col("managed_element", pa.string(), "Network element the object DN names (its ManagedElement, "
            "MeContext or NE value); null when the DN does not name one"),
        col("cell_id", pa.string(), "Cell the object DN resolves to (null if not a cell): the inventory's cell_id, "
            "else <managed_element>/<cell class>=<RDN value>, NRCellCU and NRCellDU folded into NRCell"),
        col("period_start", TIMESTAMP, "Start of the granularity period (UTC)", nullable=False),
        col("granularity_s", pa.int32(), "Granularity period length", "s", nullable=False),
        key("counter_name", "Canonical counter name (3GPP TS 32.425 / 28.552), e.g. RRC.ConnEstabAtt"),
        col("value", pa.float64(), "Counter value in the canonical unit of the counter"),
        col("vendor", pa.string(), "Vendor whose OSS produced the value"),
        col("suspect", pa.bool_(), "The OSS flagged the measurement as unreliable"),
    ),
    ranges={"granularity_s": (60, 86400)},
)

ALARMS = Table(
    name="alarms",
    domain="network",
    description="Fault-management alarms: one row per alarm with raise and clear time (X.733 style).",
    keys=("alarm_id",),
    time_column="raised_at",
    columns=(
        key("alarm_id", "Alarm identifier"),
        col("object_dn", pa.string(), "Alarmed object DN"),
        col("site_id", pa.string(), "Site of the alarmed object"),
        col("cell_id", pa.string(), "Cell of the alarmed object (null for site-level alarms)"),
        col("raised_at", TIMESTAMP, "Time the alarm was raised (UTC)", nullable=False),
        col("cleared_at", TIMESTAMP, "Time the alarm cleared (null while active)"),
        col("severity", pa.string(), "critical, major, minor or warning", nullable=False),
        col("probable_cause", pa.string(), "X.733 probable cause, e.g. cell-unavailable"),
        col("alarm_text", pa.string(), "Vendor alarm text"),
        col("vendor", pa.string(), "Vendor of the alarmed equipment"),
    ),
)

DRIVE_TESTS = Table(
    name="drive_tests",
    domain="network",
    description="Drive-test and measurement-report samples: position, serving cell and radio "
                "measurements, usually one row per second.",
    keys=("test_id", "record_number"),
    time_column="measured_at",
    columns=(
        key("test_id", "Test run (trace) identifier, e.g. the source file name"),
        col("record_number", pa.int64(), "1-based sample number within the test run", nullable=False),
        col("measured_at", TIMESTAMP, "Sample time (UTC)", nullable=False),
        col("lat", pa.float64(), "Latitude (WGS84)", "deg"),
        col("lon", pa.float64(), "Longitude (WGS84)", "deg"),
        col("speed_kmh", pa.float32(), "Speed of the test device", "km/h"),
        col("operator", pa.string(), "Network operator measured"),
        col("cell_id", pa.string(), "Serving cell identifier as reported by the device"),
        col("technology", pa.string(), "Radio access technology: 2G, 3G, 4G or 5G"),
        col("rsrp_dbm", pa.float32(), "LTE/anchor RSRP", "dBm"),
        col("rsrq_db", pa.float32(), "LTE/anchor RSRQ", "dB"),
        col("sinr_db", pa.float32(), "SINR / SNR", "dB"),
        col("cqi", pa.int8(), "Channel quality indicator (0-15)"),
        col("rssi_dbm", pa.float32(), "Received signal strength", "dBm"),
        col("nr_rsrp_dbm", pa.float32(), "5G NR SS-RSRP (non-standalone leg)", "dBm"),
        col("nr_rsrq_db", pa.float32(), "5G NR SS-RSRQ", "dB"),
        col("dl_throughput_kbps", pa.float32(), "Application downlink throughput in the second", "kbps"),
        col("ul_throughput_kbps", pa.float32(), "Application uplink throughput in the second", "kbps"),
        col("ping_avg_ms", pa.float32(), "Mean ping round trip time", "ms"),
        col("ping_loss_pct", pa.float32(), "Ping packet loss", "%"),
        col("state", pa.string(), "Device activity as logged: D (downloading), I (idle), V (voice), VD"),
        col("scenario", pa.string(), "static or driving"),
        col("service", pa.string(), "What was running, e.g. download, netflix, amazon_prime"),
        location_h3(),
        col("h3_index", pa.string(), "H3 cell (resolution 9) of the sample position"),
    ),
    location=("lat", "lon"),
    ranges={"lat": (-90, 90), "lon": (-180, 180), "rsrp_dbm": (-156, -31), "nr_rsrp_dbm": (-156, -31),
            "rsrq_db": (-43, 20), "nr_rsrq_db": (-43, 20), "sinr_db": (-23, 40), "cqi": (0, 15),
            "speed_kmh": (0, 500), "dl_throughput_kbps": (0, 1e8), "ul_throughput_kbps": (0, 1e8),
            "ping_loss_pct": (0, 100)},
)

TABLES = (CELLS, PM_COUNTERS, ALARMS, DRIVE_TESTS)
