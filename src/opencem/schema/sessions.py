"""Session records from probes and devices (the "pipe" and "device" views of experience)."""

import pyarrow as pa

from .base import LOCATION_RANGES, RADIO_RANGES, TIMESTAMP, Table, col, key, radio_context, session_keys, ue_location

XDR_VOICE = Table(
    name="xdr_voice",
    domain="sessions",
    description="Voice call records: VoLTE/VoNR from the IMS/SIP probe with RTP quality, CS fallback calls from the MSC.",
    keys=("call_id",),
    time_column="start_time",
    columns=session_keys("call_id", "Call identifier") + radio_context() + (
        col("direction", pa.string(), "MO (originating) or MT (terminating)"),
        col("voice_bearer", pa.string(), "VoLTE, VoNR, or CSFB (circuit-switched fallback)"),
        col("setup_success", pa.bool_(), "SIP INVITE reached 200 OK", nullable=False),
        col("sip_cause_code", pa.int16(), "Final SIP response code (200 on success, e.g. 486, 503)"),
        col("setup_time_ms", pa.float32(), "INVITE to 180 Ringing", "ms"),
        col("duration_s", pa.float32(), "Conversation time (0 when setup failed)", "s"),
        col("dropped", pa.bool_(), "Call released abnormally after answer"),
        col("codec", pa.string(), "Speech codec: AMR-NB, AMR-WB or EVS"),
        col("codec_rate_kbps", pa.float32(), "Codec mode bitrate", "kbps"),
        col("packet_loss_pct", pa.float32(), "RTP packet loss (downlink)", "%"),
        col("jitter_ms", pa.float32(), "RTP interarrival jitter", "ms"),
        col("one_way_delay_ms", pa.float32(), "Mouth-to-ear one-way delay estimate", "ms"),
    ) + ue_location(),
    location=("ue_lat", "ue_lon"),
    ranges={**RADIO_RANGES, **LOCATION_RANGES, "packet_loss_pct": (0, 100), "setup_time_ms": (0, 120000),
            "duration_s": (0, 86400), "one_way_delay_ms": (0, 10000), "jitter_ms": (0, 10000)},
)

XDR_DATA = Table(
    name="xdr_data",
    domain="sessions",
    description="Web and app data sessions from the user-plane probe (S1-U/N3) with TCP and HTTP metrics.",
    keys=("session_id",),
    time_column="start_time",
    columns=session_keys("session_id", "Session identifier") + radio_context() + (
        col("app", pa.string(), "Application, e.g. web_browsing, social, messaging, gaming"),
        col("host", pa.string(), "Server host name (SNI)"),
        col("bytes_dl", pa.int64(), "Downlink volume", "bytes"),
        col("bytes_ul", pa.int64(), "Uplink volume", "bytes"),
        col("duration_ms", pa.int32(), "Session duration", "ms"),
        col("throughput_dl_kbps", pa.float32(), "Mean downlink throughput while transferring", "kbps"),
        col("tcp_rtt_ran_ms", pa.float32(), "TCP round trip time, probe to UE (radio and transport)", "ms"),
        col("tcp_rtt_internet_ms", pa.float32(), "TCP round trip time, probe to server", "ms"),
        col("http_status", pa.int16(), "HTTP status code (0 when no response was received)"),
        col("response_time_ms", pa.float32(), "First byte response delay after the request", "ms"),
        col("page_load_ms", pa.float32(), "Full page load time (web browsing only)", "ms"),
    ) + ue_location(),
    location=("ue_lat", "ue_lon"),
    ranges={**RADIO_RANGES, **LOCATION_RANGES, "bytes_dl": (0, 1e12), "bytes_ul": (0, 1e12),
            "throughput_dl_kbps": (0, 1e7), "tcp_rtt_ran_ms": (0, 60000),
            "tcp_rtt_internet_ms": (0, 60000), "http_status": (0, 599)},
)

XDR_VIDEO = Table(
    name="xdr_video",
    domain="sessions",
    description="Video streaming sessions (OTT and IPTV-over-mobile) with buffering and stalls.",
    keys=("session_id",),
    time_column="start_time",
    columns=session_keys("session_id", "Session identifier") + radio_context() + (
        col("app", pa.string(), "Video application, e.g. streamflix, clipshare, operator_tv"),
        col("program_source", pa.string(), "Content/program source (channel or catalogue origin)"),
        col("cdn_node", pa.string(), "CDN edge node that served the session"),
        col("start_success", pa.bool_(), "Playback started (false: video start failure)",
            nullable=False),
        col("initial_buffering_ms", pa.float32(), "Time from play request to first frame", "ms"),
        col("stall_count", pa.int16(), "Number of rebuffering events"),
        col("stall_time_ms", pa.float32(), "Total rebuffering time", "ms"),
        col("play_duration_s", pa.float32(), "Media time played", "s"),
        col("bitrate_kbps", pa.float32(), "Mean video bitrate", "kbps"),
        col("resolution_height_px", pa.int16(), "Dominant vertical resolution, e.g. 720, 1080"),
        col("frame_rate_fps", pa.float32(), "Frame rate", "fps"),
        col("video_codec", pa.string(), "Video codec: h264, h265 or vp9"),
        col("screen_size_inch", pa.float32(), "Device screen diagonal", "inch"),
    ) + ue_location(),
    location=("ue_lat", "ue_lon"),
    ranges={**RADIO_RANGES, **LOCATION_RANGES, "initial_buffering_ms": (0, 600000), "stall_time_ms": (0, 86400000),
            "bitrate_kbps": (0, 1e6), "frame_rate_fps": (0, 240)},
)

IOT_EVENTS = Table(
    name="iot_events",
    domain="sessions",
    description="IoT service process steps (smoke sensors, shared bikes, smart meters) from the IoT platform.",
    keys=("event_id",),
    time_column="event_time",
    columns=(
        key("event_id", "Event identifier"),
        key("subscriber_id", "Enterprise customer (subscriber) that owns the device fleet"),
        key("iot_device_id", "IoT device (SIM) identifier"),
        col("event_time", TIMESTAMP, "Event time (UTC)", nullable=False),
        col("service", pa.string(), "smoke_sensor, shared_bike or smart_meter", nullable=False),
        col("process_step", pa.string(), "Step of the service process, e.g. report, unlock"),
        col("cell_id", pa.string(), "Serving NB-IoT/LTE-M cell"),
        col("technology", pa.string(), "4G (NB-IoT/LTE-M) or 5G"),
        col("device_model", pa.string(), "IoT module model"),
        col("success", pa.bool_(), "Step completed", nullable=False),
        col("latency_ms", pa.float32(), "Step latency end to end", "ms"),
        col("battery_pct", pa.float32(), "Battery level reported by the device", "%"),
        col("rsrp_dbm", pa.float32(), "RSRP at the device", "dBm"),
        col("sinr_db", pa.float32(), "SINR at the device", "dB"),
    ),
    ranges={"rsrp_dbm": RADIO_RANGES["rsrp_dbm"], "sinr_db": RADIO_RANGES["sinr_db"],
            "battery_pct": (0, 100), "latency_ms": (0, 600000)},
)

BROADBAND_SESSIONS = Table(
    name="broadband_sessions",
    domain="sessions",
    description="Home broadband line records (hourly, from CPE/TR-069 and the OLT).",
    keys=("line_id", "start_time"),
    time_column="start_time",
    columns=(
        key("line_id", "Broadband line identifier"),
        key("subscriber_id", "Subscriber owning the line"),
        col("start_time", TIMESTAMP, "Start of the reporting hour (UTC)", nullable=False),
        col("cell_id", pa.string(), "OLT (cells.technology = FTTH-OLT) serving the line"),
        col("device_model", pa.string(), "Home gateway (CPE) model"),
        col("sync_rate_dl_kbps", pa.float32(), "Downstream sync / provisioned rate", "kbps"),
        col("sync_rate_ul_kbps", pa.float32(), "Upstream sync / provisioned rate", "kbps"),
        col("latency_ms", pa.float32(), "Mean latency CPE to internet gateway", "ms"),
        col("packet_loss_pct", pa.float32(), "Packet loss CPE to internet gateway", "%"),
        col("wifi_rssi_dbm", pa.float32(), "Median Wi-Fi RSSI of associated home devices", "dBm"),
        col("wifi_quality_score", pa.float32(), "Wi-Fi quality 0 (bad) - 100 (good) from the CPE"),
        col("wifi_band", pa.string(), "Dominant Wi-Fi band: 2.4GHz, 5GHz"),
        col("outage_s", pa.float32(), "Seconds without service in the hour", "s"),
        col("bytes_dl", pa.int64(), "Downstream volume in the hour", "bytes"),
    ),
    ranges={"outage_s": (0, 3600), "packet_loss_pct": (0, 100), "wifi_quality_score": (0, 100),
            "wifi_rssi_dbm": (-120, 0)},
)

TABLES = (XDR_VOICE, XDR_DATA, XDR_VIDEO, IOT_EVENTS, BROADBAND_SESSIONS)
