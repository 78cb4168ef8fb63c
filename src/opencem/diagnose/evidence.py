"""Evidence for diagnosis, as an operator finds it in the lake: one row per poor-experience case
(subscriber, service, hour) with what its peers, the radio, the OSS and the BSS say about it.

Everything is DuckDB SQL over the lake's views, built table by table on one connection (no
per-record Python). The steps:

1. ``diag_sessions``: voice, data and video records as one table, each marked poor by the
   definitions' ``poor_sessions`` expressions, with the flags the evidence needs (failed, SIP
   403, dropped, CS fallback, DNS timeout, 5xx, ...) and the place (cell, site, province, H3
   grid of located sessions at resolution 9).
2. Peer statistics per object and hour (cell, site, region, host, CDN node, program source,
   grid) and each object's own baseline over the window (median and quartiles of its hourly
   share of poor users), per device model and firmware over the window, per user over the
   window and the day.
3. PM counters per cell and hour (PRB load, unavailable seconds, RRC setups), alarms active in
   the hour, the account as BSS held it by the hour's end (dated events over the snapshot).
4. The cases: per (subscriber, service, hour) with a poor session, the case's own figures and
   its peers' beside them; home broadband line-hours join with their OLT's other lines.

Features a rule or the learned layer reads are listed in :data:`FEATURES` with their types;
the location columns (cell_id, site_id, ...) name the candidate objects of each case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from ..geo import parent_masks

GRID_RESOLUTION = 9  # an H3 block of about 0.1 km2: the size of a coverage problem at a place
# Apps whose sessions want more than 1 Mbps (a slow one is poor; a slow chat message is not).
DEMANDING_APPS = ("web_browsing", "social", "messaging", "maps", "software_update", "cloud_storage")
BULK_APPS = ("web_browsing", "social", "maps", "software_update", "cloud_storage")  # want 5 Mbps and more
USER_FAILURE_CAUSES = (480, 486, 487, 603)  # busy, no answer, cancelled, declined: not the network's
NETWORK_FAILURE_CAUSES = (500, 503, 504, 408)
SESSION_TABLES = {"voice": "xdr_voice", "mobile_data": "xdr_data", "video": "xdr_video",
                  "home_broadband": "broadband_sessions"}


@dataclass(frozen=True)
class Window:
    """Cases from ``case_from`` to ``case_to`` (UTC, end exclusive); peers and baselines over
    ``start`` to ``end``, which holds it."""

    case_from: datetime
    case_to: datetime
    start: datetime
    end: datetime


def window_around(case_from: datetime, case_to: datetime, lake_start: datetime, lake_end: datetime,
                  margin: timedelta = timedelta(days=2)) -> Window:
    return Window(case_from, case_to, max(lake_start, case_from - margin), min(lake_end, case_to + margin))


def _ts(t: datetime) -> str:
    return f"TIMESTAMPTZ '{t.isoformat()}'"


def _in_list(values) -> str:
    return ", ".join(f"'{v}'" if isinstance(v, str) else str(v) for v in values)


def build(con, window: Window, poor: dict[str, str], subscriber: str | None = None) -> pa.Table:
    """The evidence table of every poor case in ``window`` (of one ``subscriber``'s, when
    given), with ``poor`` the SQL of each service's poor-session condition."""
    keep, put = parent_masks(GRID_RESOLUTION)
    t0, t1 = _ts(window.start), _ts(window.end)
    c0, c1 = _ts(window.case_from), _ts(window.case_to)
    demanding, bulk = _in_list(DEMANDING_APPS), _in_list(BULK_APPS)
    who = f"AND subscriber_id = '{subscriber.replace(chr(39), chr(39) * 2)}'" if subscriber else ""
    steps = [
        f"""CREATE OR REPLACE TEMP TABLE diag_sessions AS
        WITH v AS (
          SELECT 'voice' AS service, subscriber_id, start_time, cell_id, device_model, rsrp_dbm, sinr_db, location_h3,
                 ({poor['voice']}) AS poor,
                 NOT setup_success AND coalesce(sip_cause_code, 0) NOT IN ({_in_list(USER_FAILURE_CAUSES)}) AS failed,
                 coalesce(sip_cause_code = 403, false) AS blocked,
                 coalesce(sip_cause_code IN ({_in_list(NETWORK_FAILURE_CAUSES)}), false) AS network_failure,
                 coalesce(dropped, false) AS dropped, voice_bearer = 'CSFB' AS csfb,
                 setup_time_ms, packet_loss_pct, jitter_ms, one_way_delay_ms
          FROM xdr_voice WHERE start_time >= {t0} AND start_time < {t1}),
        d AS (
          SELECT 'mobile_data' AS service, subscriber_id, start_time, cell_id, device_model, rsrp_dbm, sinr_db,
                 location_h3, ({poor['mobile_data']}) AS poor, http_status = 0 AS failed,
                 http_status = 0 AND coalesce(bytes_dl, 0) = 0 AND duration_ms < 4900 AS blocked,
                 -- a resolver gives up after 5 s a try: a failed session that long waited for DNS
                 http_status = 0 AND duration_ms >= 4900 AS dns_timeout, http_status >= 500 AS http_5xx,
                 host, app, app IN ({demanding}) AS demanding, app IN ({bulk}) AS bulk,
                 throughput_dl_kbps, tcp_rtt_ran_ms, tcp_rtt_internet_ms, response_time_ms
          FROM xdr_data WHERE start_time >= {t0} AND start_time < {t1}),
        m AS (
          SELECT 'video' AS service, subscriber_id, start_time, cell_id, device_model, rsrp_dbm, sinr_db, location_h3,
                 ({poor['video']}) AS poor, NOT start_success AS failed, cdn_node, program_source,
                 initial_buffering_ms, stall_time_ms / nullif(play_duration_s * 1000 + stall_time_ms, 0) AS stall_ratio,
                 bitrate_kbps
          FROM xdr_video WHERE start_time >= {t0} AND start_time < {t1})
        SELECT s.*, date_trunc('hour', s.start_time) AS hour_start, c.site_id, c.province AS region,
               c.lat AS cell_lat, c.lon AS cell_lon,
               CASE WHEN s.location_h3 IS NOT NULL THEN lower(hex((s.location_h3 & {keep}) | {put})) END AS grid_located
        FROM (SELECT * FROM v UNION ALL BY NAME SELECT * FROM d UNION ALL BY NAME SELECT * FROM m) s
        LEFT JOIN cells c USING (cell_id)""",
        # --- the cases' own figures ---------------------------------------------------------
        f"""CREATE OR REPLACE TEMP TABLE diag_case_own AS
        SELECT subscriber_id, service, hour_start, count(*) AS sessions, count(*) FILTER (poor) AS poor_sessions,
               mode(cell_id) FILTER (poor) AS cell_id, mode(site_id) FILTER (poor) AS site_id,
               mode(region) FILTER (poor) AS region, mode(host) FILTER (poor) AS host,
               mode(cdn_node) FILTER (poor) AS cdn_node, mode(program_source) FILTER (poor) AS program_source,
               mode(grid_located) FILTER (poor) AS grid_poor, any_value(device_model) AS device_model,
               avg(failed::INT) FILTER (poor) AS poor_failed_share,
               avg(blocked::INT) FILTER (poor) AS poor_blocked_share,
               avg(network_failure::INT) FILTER (poor) AS poor_network_failure_share,
               avg(dropped::INT) FILTER (poor) AS poor_dropped_share,
               avg(csfb::INT) AS csfb_share,
               max(setup_time_ms) FILTER (poor) AS poor_setup_time_max_ms,
               max(packet_loss_pct) FILTER (poor) AS poor_packet_loss_max_pct,
               avg(jitter_ms) AS jitter_ms, avg(one_way_delay_ms) AS one_way_delay_ms,
               avg(rsrp_dbm) FILTER (poor) AS poor_rsrp_dbm, min(rsrp_dbm) FILTER (poor) AS poor_rsrp_min_dbm,
               avg(sinr_db) FILTER (poor) AS poor_sinr_db, min(sinr_db) FILTER (poor) AS poor_sinr_min_db,
               avg(dns_timeout::INT) FILTER (poor) AS poor_dns_timeout_share,
               avg(http_5xx::INT) FILTER (poor) AS poor_http_5xx_share,
               max(throughput_dl_kbps) FILTER (demanding) AS throughput_max_kbps,
               median(throughput_dl_kbps) FILTER (demanding) AS throughput_median_kbps,
               avg(tcp_rtt_ran_ms) AS rtt_ran_ms, avg(tcp_rtt_internet_ms) AS rtt_internet_ms,
               max(response_time_ms) FILTER (poor) AS poor_response_max_ms,
               max(initial_buffering_ms) FILTER (poor) AS poor_buffering_max_ms,
               max(stall_ratio) FILTER (poor) AS poor_stall_ratio_max,
               avg(bitrate_kbps) AS bitrate_kbps, max(bitrate_kbps) AS bitrate_max_kbps,
               min(start_time) FILTER (poor) AS first_poor_at, any_value(cell_lat) AS cell_lat,
               any_value(cell_lon) AS cell_lon
        FROM diag_sessions WHERE hour_start >= {c0} AND hour_start < {c1} {who}
        GROUP BY ALL HAVING count(*) FILTER (poor) > 0""",
        # --- peers per object and hour, and each object's own baseline ----------------------
        """CREATE OR REPLACE TEMP TABLE diag_object_hour AS
        SELECT CASE WHEN GROUPING(cell_id) = 0 THEN 'cell' WHEN GROUPING(site_id) = 0 THEN 'site'
                    WHEN GROUPING(region) = 0 THEN 'region' WHEN GROUPING(host) = 0 THEN 'host'
                    WHEN GROUPING(cdn_node) = 0 THEN 'cdn_node' WHEN GROUPING(program_source) = 0 THEN 'program_source'
                    ELSE 'grid' END AS object_type,
               coalesce(cell_id, site_id, region, host, cdn_node, program_source, grid_located) AS object_id, hour_start,
               count(DISTINCT subscriber_id) AS users, count(DISTINCT subscriber_id) FILTER (poor) AS poor_users,
               count(*) AS sessions, avg(failed::INT) AS failed_share, avg(dropped::INT) AS dropped_share,
               avg(sinr_db) AS sinr_db, avg(rsrp_dbm) AS rsrp_dbm, avg(tcp_rtt_ran_ms) AS rtt_ran_ms,
               avg(tcp_rtt_internet_ms) AS rtt_internet_ms, avg(one_way_delay_ms) AS one_way_delay_ms,
               avg(packet_loss_pct) AS packet_loss_pct, avg(dns_timeout::INT) AS dns_timeout_share,
               avg(http_5xx::INT) AS http_5xx_share, median(response_time_ms) AS response_ms,
               median(initial_buffering_ms) AS buffering_ms, avg(stall_ratio) AS stall_ratio,
               median(throughput_dl_kbps) FILTER (bulk) AS throughput_kbps
        FROM diag_sessions
        GROUP BY GROUPING SETS ((cell_id, hour_start), (site_id, hour_start), (region, hour_start),
                                (host, hour_start), (cdn_node, hour_start), (program_source, hour_start),
                                (grid_located, hour_start))
        HAVING coalesce(cell_id, site_id, region, host, cdn_node, program_source, grid_located) IS NOT NULL""",
        """CREATE OR REPLACE TEMP TABLE diag_object_base AS
        SELECT object_type, object_id, count(*) AS hours,
               median(poor_users / users) AS poor_share_median,
               quantile_cont(poor_users / users, 0.25) AS poor_share_q1,
               quantile_cont(poor_users / users, 0.75) AS poor_share_q3,
               median(sinr_db) AS sinr_db, median(rsrp_dbm) AS rsrp_dbm, median(rtt_ran_ms) AS rtt_ran_ms,
               median(rtt_internet_ms) AS rtt_internet_ms, median(one_way_delay_ms) AS one_way_delay_ms,
               median(dns_timeout_share) AS dns_timeout_share, median(http_5xx_share) AS http_5xx_share,
               median(response_ms) AS response_ms, median(buffering_ms) AS buffering_ms,
               median(failed_share) AS failed_share, median(sessions) AS sessions,
               median(throughput_kbps) AS throughput_kbps
        FROM diag_object_hour WHERE users >= 3 GROUP BY ALL""",
        """CREATE OR REPLACE TEMP TABLE diag_network_hour AS
        SELECT hour_start, count(DISTINCT subscriber_id) FILTER (poor) / count(DISTINCT subscriber_id) AS poor_share
        FROM diag_sessions GROUP BY ALL""",
        # device model and firmware over the window: failed and dropped calls on it against the rest
        """CREATE OR REPLACE TEMP TABLE diag_firmware AS
        WITH calls AS (SELECT s.device_model, u.device_firmware, s.subscriber_id,
                              (s.failed AND s.network_failure OR s.dropped)::INT AS bad
                       FROM diag_sessions s LEFT JOIN subscribers u USING (subscriber_id) WHERE s.service = 'voice'),
             fw AS (SELECT device_model, device_firmware, count(DISTINCT subscriber_id) AS users, count(*) AS calls,
                           avg(bad) AS bad_share FROM calls GROUP BY ALL),
             model AS (SELECT device_model, count(*) AS calls, sum(bad) AS bad FROM calls GROUP BY ALL),
             network AS (SELECT avg(bad) AS bad_share FROM calls)
        SELECT fw.device_model, fw.device_firmware, fw.users AS firmware_users, fw.calls AS firmware_calls,
               fw.bad_share AS firmware_bad_call_share,
               (m.bad - fw.bad_share * fw.calls) / nullif(m.calls - fw.calls, 0) AS model_other_firmware_bad_call_share,
               n.bad_share AS network_bad_call_share
        FROM fw JOIN model m USING (device_model), network n""",
        # this user across cells and hours
        """CREATE OR REPLACE TEMP TABLE diag_user AS
        SELECT subscriber_id, service, count(*) AS sessions, avg(poor::INT) AS poor_share,
               avg(failed::INT) AS failed_share, avg(blocked::INT) AS blocked_share,
               avg(csfb::INT) FILTER (rsrp_dbm > -105) AS csfb_share_good_rsrp,
               count(DISTINCT cell_id) FILTER (poor) AS poor_cells, count(DISTINCT cell_id) AS cells,
               count(DISTINCT hour_start) FILTER (poor) / count(DISTINCT hour_start) AS poor_hour_share,
               quantile_cont(throughput_dl_kbps, 0.9) FILTER (bulk) AS throughput_p90_kbps,
               max(bitrate_kbps) AS bitrate_max_kbps
        FROM diag_sessions GROUP BY ALL""",
        """CREATE OR REPLACE TEMP TABLE diag_user_day AS
        SELECT subscriber_id, CAST(hour_start AS DATE) AS day,
               max(throughput_dl_kbps) FILTER (bulk) AS throughput_max_kbps,
               count(*) FILTER (bulk) AS bulk_sessions,
               max(bitrate_kbps) AS bitrate_max_kbps
        FROM diag_sessions WHERE service IN ('mobile_data', 'video') GROUP BY ALL""",
        # where the user usually is: the cells they used, their located grid per cell
        """CREATE OR REPLACE TEMP TABLE diag_user_cells AS
        SELECT DISTINCT subscriber_id, cell_id FROM diag_sessions WHERE cell_id IS NOT NULL""",
        """CREATE OR REPLACE TEMP TABLE diag_user_grid AS
        SELECT subscriber_id, cell_id, mode(grid_located) AS grid_id FROM diag_sessions
        WHERE grid_located IS NOT NULL GROUP BY ALL""",
        """CREATE OR REPLACE TEMP TABLE diag_grid AS
        SELECT grid_located AS grid_id, cell_id, count(*) AS sessions, median(rsrp_dbm) AS rsrp_dbm,
               avg(poor::INT) AS poor_share
        FROM diag_sessions WHERE grid_located IS NOT NULL GROUP BY ALL""",
        """CREATE OR REPLACE TEMP TABLE diag_cell_rsrp AS
        SELECT cell_id, median(rsrp_dbm) AS rsrp_dbm, avg(poor::INT) AS poor_share
        FROM diag_sessions WHERE grid_located IS NOT NULL GROUP BY ALL""",
        # --- OSS: PM counters per cell and hour, alarms active in the hour --------------------
        f"""CREATE OR REPLACE TEMP TABLE diag_pm AS
        WITH h AS (
          SELECT cell_id, date_trunc('hour', period_start) AS hour_start,
                 max(value) FILTER (counter_name = 'RRU.PrbTotDl') AS prb_max_pct,
                 sum(value) FILTER (counter_name = 'RRU.CellUnavailableTime') AS unavailable_s,
                 sum(value) FILTER (counter_name = 'RRC.ConnEstabAtt') AS rrc_attempts,
                 sum(value) FILTER (counter_name = 'RRC.ConnEstabSucc') AS rrc_successes
          FROM pm_counters WHERE period_start >= {t0} AND period_start < {t1} AND cell_id IS NOT NULL GROUP BY ALL)
        SELECT h.*, h.rrc_attempts / nullif(b.rrc_attempts, 0) AS rrc_attempts_vs_usual
        FROM h LEFT JOIN (SELECT cell_id, median(rrc_attempts) AS rrc_attempts FROM h GROUP BY ALL) b USING (cell_id)""",
        f"""CREATE OR REPLACE TEMP TABLE diag_alarm_hour AS
        WITH hours AS (SELECT DISTINCT hour_start FROM diag_case_own
                       UNION SELECT DISTINCT date_trunc('hour', start_time) FROM broadband_sessions
                       WHERE start_time >= {c0} AND start_time < {c1})
        SELECT h.hour_start, a.cell_id, a.site_id, a.probable_cause
        FROM hours h JOIN alarms a ON a.raised_at < h.hour_start + INTERVAL 1 HOUR
         AND coalesce(a.cleared_at, TIMESTAMPTZ '9999-01-01') > h.hour_start""",
        # cells down in an hour (PM unavailable time or an outage alarm), for the users they pushed off
        """CREATE OR REPLACE TEMP TABLE diag_down AS
        SELECT p.cell_id, p.hour_start, greatest(coalesce(p.unavailable_s, 0),
               CASE WHEN a.cell_id IS NOT NULL THEN 1 ELSE 0 END) AS down_s, c.lat, c.lon
        FROM diag_pm p LEFT JOIN (SELECT DISTINCT hour_start, cell_id FROM diag_alarm_hour
                                  WHERE probable_cause = 'cell-unavailable') a USING (cell_id, hour_start)
        JOIN cells c USING (cell_id) WHERE coalesce(p.unavailable_s, 0) > 0 OR a.cell_id IS NOT NULL""",
    ]
    for sql in steps:
        con.execute(sql)
    con.execute(_cases_sql(c0, c1, who, poor['home_broadband']))
    return con.sql("SELECT * FROM diag_cases ORDER BY hour_start, subscriber_id, service").to_arrow_table()


def _peer(alias: str, object_type: str, column: str) -> str:
    """Joins of one object's hour (its peers) and baseline, for the case's ``column``."""
    return f"""
        LEFT JOIN diag_object_hour {alias} ON {alias}.object_type = '{object_type}' AND {alias}.object_id = o.{column}
         AND {alias}.hour_start = o.hour_start
        LEFT JOIN diag_object_base {alias}b ON {alias}b.object_type = '{object_type}' AND {alias}b.object_id = o.{column}"""


def _excess(alias: str) -> str:
    """The hour's share of poor users among the others, and how far it lies above the object's
    own usual (median, in interquartile ranges: the robust z of BARO and N-sigma methods)."""
    share = f"(({alias}.poor_users - 1) / nullif({alias}.users - 1, 0))"
    return (f"{share} AS {alias}_others_poor_share, {alias}.users AS {alias}_users, "
            f"({share} - {alias}b.poor_share_median) / greatest({alias}b.poor_share_q3 - {alias}b.poor_share_q1, 0.02) "
            f"AS {alias}_poor_excess_iqr")


def _cases_sql(c0: str, c1: str, who: str, poor_line: str) -> str:
    return f"""CREATE OR REPLACE TEMP TABLE diag_cases AS
    WITH mobile AS (
      SELECT o.*, coalesce(o.grid_poor, ug.grid_id) AS grid_id, u.device_firmware, u.data_cap_gb, u.segment,
             u.arpu_monthly, {_excess('cell')}, {_excess('site')}, {_excess('reg')}, {_excess('hst')},
             {_excess('cdn')}, {_excess('src')},
             cell.sessions AS cell_sessions, cell.failed_share AS cell_failed_share,
             cellb.failed_share AS cell_failed_share_usual, cell.dropped_share AS cell_dropped_share,
             cell.sinr_db - cellb.sinr_db AS cell_sinr_delta_db, cell.rsrp_dbm - cellb.rsrp_dbm AS cell_rsrp_delta_db,
             cell.rtt_ran_ms - cellb.rtt_ran_ms AS cell_rtt_ran_delta_ms,
             cell.sessions / nullif(cellb.sessions, 0) AS cell_sessions_vs_usual,
             cell.throughput_kbps AS cell_throughput_kbps, cellb.throughput_kbps AS cell_throughput_usual_kbps,
             site.rtt_ran_ms - siteb.rtt_ran_ms AS site_rtt_ran_delta_ms,
             site.packet_loss_pct AS site_packet_loss_pct, site.one_way_delay_ms - siteb.one_way_delay_ms
               AS site_delay_delta_ms, site.failed_share AS site_failed_share,
             reg.rtt_internet_ms - regb.rtt_internet_ms AS region_rtt_internet_delta_ms,
             reg.one_way_delay_ms - regb.one_way_delay_ms AS region_delay_delta_ms,
             reg.failed_share AS region_failed_share, regb.failed_share AS region_failed_share_usual,
             reg.dns_timeout_share AS region_dns_timeout_share, regb.dns_timeout_share AS region_dns_timeout_share_usual,
             hst.http_5xx_share AS host_http_5xx_share, hstb.http_5xx_share AS host_http_5xx_share_usual,
             hst.response_ms / nullif(hstb.response_ms, 0) AS host_response_vs_usual,
             cdn.buffering_ms / nullif(cdnb.buffering_ms, 0) AS cdn_buffering_vs_usual, cdn.stall_ratio AS cdn_stall_ratio,
             src.failed_share AS source_failed_share, srcb.failed_share AS source_failed_share_usual,
             src.stall_ratio AS source_stall_ratio,
             nh.poor_share AS network_poor_share,
             fw.firmware_users, fw.firmware_bad_call_share, fw.model_other_firmware_bad_call_share,
             fw.network_bad_call_share,
             usr.poor_share AS user_poor_share, usr.failed_share AS user_failed_share,
             usr.blocked_share AS user_blocked_share, uv.csfb_share_good_rsrp AS user_csfb_share_good_rsrp,
             uv.sessions AS user_calls,
             usr.poor_cells AS user_poor_cells, usr.cells AS user_cells, usr.poor_hour_share AS user_poor_hour_share,
             ud.throughput_max_kbps AS user_day_throughput_max_kbps, ud.bulk_sessions AS user_day_bulk_sessions,
             ud.bitrate_max_kbps AS user_day_bitrate_max_kbps,
             g.rsrp_dbm - cr.rsrp_dbm AS grid_rsrp_gap_db, g.sessions AS grid_sessions,
             g.poor_share - cr.poor_share AS grid_poor_excess,
             pm.prb_max_pct AS cell_prb_max_pct, pm.unavailable_s AS cell_unavailable_s,
             pm.rrc_successes / nullif(pm.rrc_attempts, 0) AS cell_rrc_success_ratio,
             pm.rrc_attempts_vs_usual AS cell_rrc_attempts_vs_usual,
             EXISTS (SELECT 1 FROM diag_alarm_hour a WHERE a.hour_start = o.hour_start AND a.cell_id = o.cell_id
                     AND a.probable_cause = 'cell-unavailable') AS cell_alarm,
             EXISTS (SELECT 1 FROM diag_alarm_hour a WHERE a.hour_start = o.hour_start AND a.site_id = o.site_id
                     AND a.probable_cause = 'transmission-degraded') AS site_transmission_alarm
      FROM diag_case_own o
      LEFT JOIN subscribers u USING (subscriber_id)
      LEFT JOIN diag_user_grid ug ON ug.subscriber_id = o.subscriber_id AND ug.cell_id = o.cell_id
      {_peer('cell', 'cell', 'cell_id')} {_peer('site', 'site', 'site_id')} {_peer('reg', 'region', 'region')}
      {_peer('hst', 'host', 'host')} {_peer('cdn', 'cdn_node', 'cdn_node')} {_peer('src', 'program_source', 'program_source')}
      LEFT JOIN diag_network_hour nh ON nh.hour_start = o.hour_start
      LEFT JOIN diag_firmware fw ON fw.device_model = o.device_model AND fw.device_firmware = u.device_firmware
      LEFT JOIN diag_user usr ON usr.subscriber_id = o.subscriber_id AND usr.service = o.service
      LEFT JOIN diag_user uv ON uv.subscriber_id = o.subscriber_id AND uv.service = 'voice'
      LEFT JOIN diag_user_day ud ON ud.subscriber_id = o.subscriber_id AND ud.day = CAST(o.hour_start AS DATE)
      LEFT JOIN diag_grid g ON g.grid_id = coalesce(o.grid_poor, ug.grid_id) AND g.cell_id = o.cell_id
      LEFT JOIN diag_cell_rsrp cr ON cr.cell_id = o.cell_id
      LEFT JOIN diag_pm pm ON pm.cell_id = o.cell_id AND pm.hour_start = o.hour_start),
    -- a cell the user uses that was down in the hour (they were served by another)
    usual_down AS (
      SELECT m.subscriber_id, m.service, m.hour_start, arg_max(d.cell_id, d.down_s) AS down_cell_id,
             max(d.down_s) AS usual_cell_down_s
      FROM mobile m JOIN diag_user_cells uc ON uc.subscriber_id = m.subscriber_id AND uc.cell_id <> m.cell_id
      JOIN diag_down d ON d.cell_id = uc.cell_id AND d.hour_start = m.hour_start GROUP BY ALL),
    near_down AS (
      SELECT m.subscriber_id, m.service, m.hour_start, arg_min(d.cell_id, (d.lat - m.cell_lat) ^ 2
               + ((d.lon - m.cell_lon) * cos(radians(m.cell_lat))) ^ 2) AS near_down_cell_id,
             min(111.2 * sqrt((d.lat - m.cell_lat) ^ 2 + ((d.lon - m.cell_lon) * cos(radians(m.cell_lat))) ^ 2))
               AS near_down_km
      FROM mobile m JOIN diag_down d ON d.hour_start = m.hour_start AND d.cell_id <> m.cell_id GROUP BY ALL),
    -- the account as BSS held it by the hour's end: the latest dated change, else the snapshot
    bss AS (
      SELECT m.subscriber_id, m.hour_start,
             coalesce(es.new_value, u.status) = 'suspended' AS bss_suspended,
             coalesce(ev.new_value, u.volte_enabled::VARCHAR) = 'true' AS bss_volte_provisioned
      FROM (SELECT DISTINCT subscriber_id, hour_start, hour_start + INTERVAL 1 HOUR AS hour_end FROM mobile) m
      LEFT JOIN subscribers u USING (subscriber_id)
      ASOF LEFT JOIN (SELECT subscriber_id, event_time, new_value FROM subscriber_events
                      WHERE event_type = 'status_change') es
        ON es.subscriber_id = m.subscriber_id AND es.event_time <= m.hour_end
      ASOF LEFT JOIN (SELECT subscriber_id, event_time, new_value FROM subscriber_events
                      WHERE event_type = 'volte_provisioning') ev
        ON ev.subscriber_id = m.subscriber_id AND ev.event_time <= m.hour_end),
    line AS (
      SELECT b.subscriber_id, 'home_broadband' AS service, b.start_time AS hour_start, 1 AS sessions, 1 AS poor_sessions,
             b.cell_id AS olt_id, c.site_id, c.province AS region, b.device_model, b.outage_s AS line_outage_s,
             b.wifi_quality_score, b.packet_loss_pct AS line_packet_loss_pct, b.latency_ms AS line_latency_ms,
             u.segment, u.arpu_monthly, b.start_time AS first_poor_at
      FROM (SELECT * FROM broadband_sessions WHERE start_time >= {c0} AND start_time < {c1} AND ({poor_line}) {who}) b
      LEFT JOIN cells c USING (cell_id) LEFT JOIN subscribers u USING (subscriber_id)),
    olt_hour AS (
      SELECT cell_id AS olt_id, start_time AS hour_start, count(*) AS olt_lines,
             count(*) FILTER (outage_s >= 60) AS olt_lines_out
      FROM broadband_sessions WHERE start_time >= {c0} AND start_time < {c1} GROUP BY ALL),
    line_window AS (
      SELECT subscriber_id, count(*) FILTER (outage_s >= 60) / count(*) AS line_outage_hour_share
      FROM broadband_sessions GROUP BY ALL),
    broadband AS (
      SELECT l.*, (h.olt_lines_out - (l.line_outage_s >= 60)::INT) / nullif(h.olt_lines - 1, 0) AS olt_others_out_share,
             h.olt_lines, w.line_outage_hour_share,
             EXISTS (SELECT 1 FROM diag_alarm_hour a WHERE a.hour_start = l.hour_start AND a.cell_id = l.olt_id
                     AND a.probable_cause = 'pon-port-down') AS olt_alarm
      FROM line l LEFT JOIN olt_hour h USING (olt_id, hour_start) LEFT JOIN line_window w USING (subscriber_id))
    SELECT m.*, coalesce(ud.down_cell_id, nd.near_down_cell_id) AS down_cell_id, ud.usual_cell_down_s,
           nd.near_down_km, b.bss_suspended, b.bss_volte_provisioned
    FROM mobile m
    LEFT JOIN usual_down ud USING (subscriber_id, service, hour_start)
    LEFT JOIN near_down nd USING (subscriber_id, service, hour_start)
    LEFT JOIN bss b USING (subscriber_id, hour_start)
    UNION ALL BY NAME SELECT * FROM broadband"""


def feature_types(table: pa.Table) -> dict[str, pa.DataType]:
    """The evidence columns a rule may read, with their Arrow types."""
    return {f.name: f.type for f in table.schema if f.name not in NOT_FEATURES}


# Keys, names of objects and times: a rule compares them only through the features.
NOT_FEATURES = {"subscriber_id", "hour_start", "first_poor_at", "cell_lat", "cell_lon", "grid_poor"}
# Object names among the columns (candidate locations), never numbers for the learned layer.
OBJECT_COLUMNS = ("cell_id", "site_id", "region", "host", "cdn_node", "program_source", "grid_id", "device_model",
                  "device_firmware", "olt_id", "down_cell_id", "segment")


_EMPTY_TYPES: dict[str, pa.DataType] = {}


def empty_feature_types() -> dict[str, pa.DataType]:
    """The features and their types, from the evidence SQL run over empty canonical tables (so
    a rule file is checked without a lake)."""
    if not _EMPTY_TYPES:
        import duckdb

        from ..engines.duckdb import register_arrow
        from ..schema import TABLES

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        for name, spec in TABLES.items():
            register_arrow(con, name, spec.schema.empty_table())
        day = datetime(2000, 1, 1).astimezone()
        table = build(con, Window(day, day + timedelta(days=1), day, day + timedelta(days=1)),
                      {service: "false" for service in SESSION_TABLES})
        con.close()
        _EMPTY_TYPES.update(feature_types(table))
    return dict(_EMPTY_TYPES)
