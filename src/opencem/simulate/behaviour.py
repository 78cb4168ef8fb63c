"""Customers react to their experience: complaints, channel interactions, NPS answers,
social posts, churn; plus the billing history BSS holds.

Reactions are driven by each subscriber's daily experience (dropped calls, failures, stalls,
outages) so analytics can learn them back. Complaint propensity follows the pattern care
teams report: 1-3 dropped calls in a day rarely lead to a complaint, 4-5 sharply do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa

from ..schema.customers import (BILLING, CHURN_EVENTS, COMPLAINTS, INTERACTIONS, SOCIAL_POSTS,
                                SUBSCRIBER_EVENTS, SURVEYS)
from .calendar import utc_offset_hours
from .config import SimConfig, rng_for
from .faults import PERIOD_MS, FaultPlan
from .frame import DAY_MS, HOUR_MS, day_start_ms, sigmoid
from .geography import Network, to_latlon
from .ids import ids, take, timestamps_ms
from .population import PLANS, SEGMENTS, Population

CATEGORIES = ("voice", "mobile_data", "video", "broadband", "billing")
CHANNELS = ("app", "web", "call_centre", "retail_store", "social")
STAGES = ("discover", "join", "use", "get_help", "renew_leave")
# How readily each segment complains (premium customers expect more).
SEGMENT_SENSITIVITY = np.array([1.5, 1.0, 0.6, 0.8, 1.3])
SEGMENT_NPS_BASE = np.array([8.0, 7.3, 7.0, 7.2, 7.5])
SEGMENT_MONTHLY_CHURN = np.array([0.008, 0.012, 0.03, 0.025, 0.006])
OPERATOR_HANDLE = "@twintel"
COMPETITORS = ("RivalTel", "BlueWave", "CityMobile")


@dataclass
class Experience:
    """Per subscriber and day: counts of what went wrong (shape: subscribers x days)."""

    voice_drops: np.ndarray
    voice_failures: np.ndarray
    data_failures: np.ndarray
    data_poor: np.ndarray
    video_poor: np.ndarray
    broadband_outage_s: np.ndarray
    worst_cell: np.ndarray  # cell index with most poor sessions that day, -1 if none
    data_gb: np.ndarray  # mobile data and video volume, down and up
    first_poor_s: np.ndarray  # second of the (UTC) day of the first poor session or outage, inf: none

    @classmethod
    def empty(cls, n: int, days: int) -> Experience:
        z = lambda: np.zeros((n, days), np.float32)  # noqa: E731 - float32: 1M x a week fits
        return cls(z(), z(), z(), z(), z(), z(), np.full((n, days), -1, np.int64), z(),
                   np.full((n, days), np.inf, np.float32))

    def first_poor(self, sub: np.ndarray, day: int, t_ms: np.ndarray, day_start_ms: int) -> None:
        """Note when (seconds into the day) each subscriber's first poor session of the day was."""
        np.minimum.at(self.first_poor_s[:, day], sub, ((t_ms - day_start_ms) / 1000).astype(np.float32))

    def add(self, field: str, sub: np.ndarray, day: int, weights: np.ndarray) -> None:
        col = getattr(self, field)
        col[:, day] += np.bincount(sub, weights=weights.astype(float), minlength=col.shape[0])

    def set_worst_cell(self, day: int, sub: np.ndarray, cell: np.ndarray, n_cells: int) -> None:
        """The cell where a subscriber had most poor sessions: where they would say it happened."""
        if len(sub) == 0:
            return
        pair, count = np.unique(sub.astype(np.int64) * n_cells + cell, return_counts=True)
        psub, pcell = pair // n_cells, pair % n_cells
        order = np.lexsort((count, psub))
        last = np.r_[psub[order][1:] != psub[order][:-1], True]
        self.worst_cell[psub[order][last], day] = pcell[order][last]

    @property
    def pain(self) -> np.ndarray:
        """A single daily badness score (roughly: 1 = one clearly bad event)."""
        return (0.8 * self.voice_drops + 0.5 * self.voice_failures + 0.2 * self.data_failures
                + 0.1 * self.data_poor + 0.3 * self.video_poor + self.broadband_outage_s / 1800)


def _time_in_day(cfg: SimConfig, day: np.ndarray, rng, lo_h=9.0, hi_h=21.0) -> np.ndarray:
    """Times between local ``lo_h`` and ``hi_h`` o'clock (opening hours, waking hours) of
    simulated ``day`` (a UTC day), in UTC ms."""
    base = np.array([day_start_ms(cfg, d) for d in range(cfg.days)], np.int64)[day]
    offset_h = np.array([utc_offset_hours(cfg, d)[12] for d in range(cfg.days)])[day]
    return base + ((rng.uniform(lo_h, hi_h, len(day)) - offset_h) * HOUR_MS).astype(np.int64)


def complaint_propensity(pop: Population, exp: Experience, billing_error: np.ndarray) -> np.ndarray:
    """(categories, subscribers, days) probability that a subscriber complains that day about
    voice, mobile data, video, home broadband and billing. Most customers live with a bad day:
    about 0.1 % of the base complains on a day, and the chance climbs steeply with what went
    wrong (two dropped calls in a day: about fifty times a good day's)."""
    n, days = exp.voice_drops.shape
    sens = SEGMENT_SENSITIVITY[pop.segment][:, None]
    outage_min = exp.broadband_outage_s / 60
    return np.stack([
        0.0002 + 0.1 * sigmoid(2.0 * (exp.voice_drops + 0.7 * exp.voice_failures - 3)),
        0.0001 + 0.04 * sigmoid(1.5 * (exp.data_failures + 0.5 * exp.data_poor - 9)),
        0.0001 + 0.04 * sigmoid(2.0 * (exp.video_poor - 4.5)),
        # only customers with a line complain about it
        pop.has_broadband[:, None] * (0.0002 + 0.03 * sigmoid((outage_min - 60) / 15)),
        np.broadcast_to((0.0001 + 0.05 * billing_error)[:, None], (n, days)),
    ]) * sens[None]


def complaints_and_care(cfg: SimConfig, net: Network, pop: Population, exp: Experience,
                        billing_error: np.ndarray) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """Complaints and every touch-point interaction; returns complaints, interactions and the
    number of complaints per subscriber."""
    rng = rng_for(cfg.seed, "care")
    n, days = exp.voice_drops.shape
    p = complaint_propensity(pop, exp, billing_error)
    hit = rng.random(p.shape) < np.minimum(p, 0.95)
    cat, sub, day = np.nonzero(hit)
    k = len(sub)
    t = _time_in_day(cfg, day, rng)
    # A complaint about the service follows what went wrong: within hours of the day's first
    # poor session (from 07:00 local), not before it.
    first = exp.first_poor_s[sub, day]
    day0 = np.array([day_start_ms(cfg, d) for d in range(cfg.days)], np.int64)[day]
    woke = day0 + ((7 - np.array([utc_offset_hours(cfg, d)[12] for d in range(cfg.days)])[day]) * HOUR_MS).astype(np.int64)
    after = np.maximum(day0 + np.nan_to_num(first, posinf=0).astype(np.int64) * 1000, woke) \
        + rng.exponential(1.5 * HOUR_MS, k).astype(np.int64)
    follows = (cat < 4) & np.isfinite(first)
    t = np.where(follows, np.minimum(after, day0 + 86_399_000), t)
    channel = rng.choice(len(CHANNELS), k, p=[0.2, 0.1, 0.55, 0.1, 0.05])
    cell = np.where(cat < 3, exp.worst_cell[sub, day], -1)
    cell_label = np.where(cell >= 0, net.cell_ids[np.maximum(cell, 0)], None)
    resolved_h = rng.lognormal(np.log(20), 1.0, k)
    open_ = rng.random(k) < 0.1
    words = np.array(["Customer reports dropped calls", "Customer reports slow or no mobile data",
                      "Customer reports video buffering", "Customer reports home broadband outage",
                      "Customer disputes bill amount"])
    complaints = pa.table({
        "complaint_id": ids("CP", np.arange(k), 8),
        "subscriber_id": ids("S", sub, 8),
        "created_at": timestamps_ms(t),
        "channel": take(list(CHANNELS), channel),
        "category": take(list(CATEGORIES), cat),
        "cell_id": pa.array(cell_label.tolist(), pa.string()),
        "description": words[cat],
        "resolved_at": pa.array(np.where(open_, 0, t + (resolved_h * HOUR_MS).astype(np.int64)),
                                mask=open_).cast(pa.timestamp("ms", tz="UTC")),
    }).cast(COMPLAINTS.schema)
    complaints_per_sub = np.bincount(sub, minlength=n)

    # Background journeys across the lifecycle, per subscriber-day.
    journeys = (  # (journey, stage, daily probability, channel weights app/web/cc/store/social)
        ("check_usage", "use", 0.06, (0.85, 0.15, 0, 0, 0)),
        ("top_up", "use", 0.015, (0.6, 0.3, 0.05, 0.05, 0)),
        ("bill_query", "get_help", 0.002, (0.3, 0.1, 0.55, 0.05, 0)),
        ("plan_change", "renew_leave", 0.0015, (0.35, 0.25, 0.2, 0.2, 0)),
        ("browse_offers", "discover", 0.002, (0.3, 0.5, 0, 0.2, 0)),
        ("device_upgrade", "join", 0.0007, (0.2, 0.3, 0.1, 0.4, 0)),
    )
    parts = []
    for j, (journey, stage, prob, weights) in enumerate(journeys):
        s, d = np.nonzero(rng.random((n, days)) < prob)
        w = np.array(weights) / sum(weights)
        parts.append((s, d, np.full(len(s), j), np.full(len(s), STAGES.index(stage)),
                      rng.choice(len(CHANNELS), len(s), p=w)))
    # Every complaint is also a get_help interaction in its channel.
    parts.append((sub, day, np.full(k, len(journeys)), np.full(k, STAGES.index("get_help")), channel))
    names = [j[0] for j in journeys] + ["report_problem"]
    isub, iday, ijourney, istage, ichannel = (np.concatenate(x) for x in zip(*parts))
    m = len(isub)
    wait_median = np.array([0.0, 0.0, 90.0, 420.0, 1800.0])[ichannel]
    wait = np.where(wait_median > 0, wait_median * rng.lognormal(0, 0.9, m), 0)
    handle = np.array([60.0, 120.0, 360.0, 900.0, 600.0])[ichannel] * rng.lognormal(0, 0.5, m)
    help_ = istage == STAGES.index("get_help")
    network_issue = ijourney == len(journeys)
    resolved = np.where(network_issue, rng.random(m) < 0.55, rng.random(m) < 0.85)
    fcr = resolved & (rng.random(m) < 0.8)
    success = np.where(help_, resolved, rng.random(m) < np.where(ichannel < 2, 0.96, 0.99))
    asked = rng.random(m) < 0.3
    csat = np.clip(np.round(4.3 - 1.6 * ~resolved - wait / 600 + rng.normal(0, 0.7, m)), 1, 5)
    ordering = np.isin(istage, [STAGES.index("join"), STAGES.index("renew_leave")])
    activation = rng.lognormal(np.log(6), 0.9, m)
    t = _time_in_day(cfg, iday, rng, 8, 22)
    order = np.argsort(t, kind="stable")
    cols = {
        "interaction_id": ids("IN", np.arange(m), 9),
        "subscriber_id": ids("S", isub[order], 8),
        "started_at": timestamps_ms(t[order]),
        "channel": take(list(CHANNELS), ichannel[order]),
        "lifecycle_stage": take(list(STAGES), istage[order]),
        "journey": take(names, ijourney[order]),
        "success": success[order],
        "wait_time_s": np.round(wait[order], 1).astype(np.float32),
        "handle_time_s": np.round(handle[order], 1).astype(np.float32),
        "resolved": pa.array(resolved[order], mask=~help_[order]),
        "first_contact_resolution": pa.array(fcr[order], mask=~help_[order]),
        "csat": pa.array(csat[order].astype(np.int8), mask=~asked[order]),
        "order_to_activation_h": pa.array(np.round(activation[order], 1).astype(np.float32),
                                          mask=~ordering[order]),
    }
    return complaints, pa.table(cols).cast(INTERACTIONS.schema), complaints_per_sub


def surveys(cfg: SimConfig, pop: Population, exp: Experience, complaints_per_sub: np.ndarray) -> pa.Table:
    """Relationship NPS: the score falls with the experience the respondent has had so far."""
    rng = rng_for(cfg.seed, "surveys")
    n, days = exp.voice_drops.shape
    sub, day = np.nonzero(rng.random((n, days)) < 0.01)
    pain_so_far = np.cumsum(exp.pain, axis=1)[sub, day]
    score = (SEGMENT_NPS_BASE[pop.segment[sub]] - 1.2 * np.log1p(pain_so_far)
             - 1.5 * (complaints_per_sub[sub] > 0) + rng.normal(0, 1.6, len(sub)))
    score = np.clip(np.round(score), 0, 10).astype(np.int8)
    comments = np.array(["", "Network drops too often", "Good value", "Great coverage",
                         "Mobile internet is slow in the evening", "Support was helpful"])
    comment = np.where(score <= 6, np.where(pain_so_far > 2, 1, 4), np.where(score >= 9, 3, 0))
    t = _time_in_day(cfg, day, rng)
    return pa.table({
        "survey_id": ids("SV", np.arange(len(sub)), 8),
        "subscriber_id": ids("S", sub, 8),
        "answered_at": timestamps_ms(t),
        "survey_type": np.full(len(sub), "relationship"),
        "channel": take(["app", "web", "sms"], rng.integers(0, 3, len(sub))),
        "nps_score": score,
        "comment": comments[comment],
    }).cast(SURVEYS.schema)


POST_TEMPLATES = {
    0: ("Calls keep dropping in {city} today {op} what is going on?",
        "Another dropped call near {city}. Seriously {op}",
        "Can't make a call in {city}, network busy every time #fail"),
    1: ("No mobile data at all in {city} right now {op}",
        "Internet so slow in {city} tonight, pages won't load",
        "{op} is mobile data down in {city}?"),
    2: ("Videos keep buffering on my phone tonight {op}",
        "Stream stuck on loading again in {city}",
        "TV app freezing every minute #annoyed {op}"),
    3: ("Home internet down again in {city} {op}",
        "Fibre has been out for an hour in {city}",
        "{op} broadband outage in {city}?"),
    4: ("Loving the 5G speeds in {city} {op}", "Any good deals on family plans {op}?",
        "Switched to {op} last month, no complaints", "Weekend in {city}, great weather"),
}


def social_posts(cfg: SimConfig, net: Network, pop: Population, exp: Experience) -> pa.Table:
    """Posts cluster where and when experience is bad; a steady background of other chatter."""
    rng = rng_for(cfg.seed, "social")
    n, days = exp.voice_drops.shape
    youth = (pop.segment == SEGMENTS.index("youth"))[:, None]
    per_cat = np.stack([exp.voice_drops + exp.voice_failures, exp.data_failures + exp.data_poor,
                        exp.video_poor])
    p = 0.04 * sigmoid(per_cat - 3) * np.where(youth, 2.5, 1.0)[None]
    cat, sub, day = np.nonzero(rng.random(p.shape) < p)
    bb_sub, bb_day = np.nonzero(rng.random((n, days)) < 0.05 * sigmoid((exp.broadband_outage_s / 60 - 45) / 10))
    cat = np.r_[cat, np.full(len(bb_sub), 3)]
    sub, day = np.r_[sub, bb_sub], np.r_[day, bb_day]
    cell = np.where(cat < 3, exp.worst_cell[sub, day], -1)
    cell = np.where(cell >= 0, cell, pop.link[0].cell[sub])
    x = net.site_x[net.cell_site[cell]] + rng.normal(0, 0.3, len(sub))
    y = net.site_y[net.cell_site[cell]] + rng.normal(0, 0.3, len(sub))
    town = net.site_town[net.cell_site[cell]]

    n_bg = rng.poisson(0.002 * n * days)
    bg_day = rng.integers(0, days, n_bg)
    bg_sub = rng.integers(0, n, n_bg)
    bx, by = pop.anchor_x[bg_sub, 0], pop.anchor_y[bg_sub, 0]
    cat = np.r_[cat, np.full(n_bg, 4)]
    day, sub = np.r_[day, bg_day], np.r_[sub, bg_sub]
    x, y, town = np.r_[x, bx], np.r_[y, by], np.r_[town, pop.home_town[bg_sub]]
    t = _time_in_day(cfg, day, rng, 7, 24)
    flat = [tpl.replace("{op}", OPERATOR_HANDLE) for c in range(5) for tpl in POST_TEMPLATES[c]]
    sizes = np.array([len(POST_TEMPLATES[c]) for c in range(5)])
    template = np.r_[0, np.cumsum(sizes)[:-1]][cat] + (rng.random(len(cat)) * sizes[cat]).astype(int)
    city = np.array(net.town_names)[town]
    texts = np.array([flat[i].replace("{city}", c) for i, c in zip(template, city)], dtype=object)
    geotagged = rng.random(len(cat)) < 0.4
    lat, lon = to_latlon(x, y)
    order = np.argsort(t, kind="stable")
    handle = ids("user_", (sub * 7919) % 1_000_003, 7)  # pseudonymous and stable per author
    return pa.table({
        "post_id": ids("P", np.arange(len(order)), 8),
        "posted_at": timestamps_ms(t[order]),
        "platform": take(["chirp", "facepage", "forum"], rng.choice(3, len(order), p=[0.6, 0.3, 0.1])),
        "author_handle": handle.take(pa.array(order)),
        "text": texts[order],
        "lat": pa.array(lat[order], mask=~geotagged[order]),
        "lon": pa.array(lon[order], mask=~geotagged[order]),
        "city": city[order],
    }).cast(SOCIAL_POSTS.observed_schema)


def churn(cfg: SimConfig, pop: Population, exp: Experience, complaints_per_sub: np.ndarray,
          suspended: np.ndarray) -> pa.Table:
    """Churn observed over the window plus ``churn_horizon_days``: base rate per segment,
    raised by bad experience and complaints, lowered by value and tenure."""
    rng = rng_for(cfg.seed, "churn")
    horizon = cfg.days + cfg.churn_horizon_days
    base = 1 - (1 - SEGMENT_MONTHLY_CHURN[pop.segment]) ** (horizon / 30)
    pain_per_day = exp.pain.mean(axis=1)
    risk = (np.exp(0.6 * np.minimum(pain_per_day, 5)) * (1 + 0.8 * (complaints_per_sub > 0))
            * np.where(pop.tenure_months < 6, 1.5, 1.0) * np.where(pop.arpu > 60, 0.8, 1.0))
    # Relative risk around 1 on average, so the segment base rates stay the churn level.
    hazard = risk / risk.mean()
    voluntary = rng.random(pop.n) < np.minimum(base * hazard, 0.9)
    involuntary = suspended & (rng.random(pop.n) < 0.5)
    who = np.flatnonzero(voluntary | involuntary)
    start = day_start_ms(cfg, 0)
    lo = start + cfg.days * DAY_MS // 2
    t = rng.integers(lo, start + horizon * DAY_MS, len(who))
    invol = involuntary[who] & ~voluntary[who]
    network = (pain_per_day[who] > 1.0) & (rng.random(len(who)) < 0.6)
    reasons = np.array(["price", "competitor_offer", "relocation", "other"])
    reason = np.where(invol, "non_payment",
                      np.where(network, "network_quality", reasons[rng.integers(0, 4, len(who))]))
    ported = ~invol & (rng.random(len(who)) < 0.7)
    order = np.argsort(t, kind="stable")
    return pa.table({
        "subscriber_id": ids("S", who[order], 8),
        "churned_at": timestamps_ms(t[order]),
        "churn_type": np.where(invol, "involuntary", "voluntary")[order],
        "stated_reason": reason[order],
        "ported_to": pa.array(np.array(COMPETITORS)[rng.integers(0, 3, len(who))][order],
                              mask=~ported[order]),
    }).cast(CHURN_EVENTS.schema)


def billing(cfg: SimConfig, pop: Population, exp: Experience) -> tuple[pa.Table, np.ndarray]:
    """Monthly bills: the three months before the window plus any month starting in it, each
    billing the data the subscriber uses in a month: their daily volume in the window (the
    xDRs' bytes) times 30, varying month to month by about 15 %. Returns the table and whether
    each subscriber's latest bill had an error."""
    rng = rng_for(cfg.seed, "billing")
    first = cfg.start_date.replace(day=1)
    months = []
    m = first
    for _ in range(3):
        m = (m - timedelta(days=1)).replace(day=1)
        months.append(m)
    months = sorted(months)
    end = cfg.start_date + timedelta(days=cfg.days)
    m = first
    while True:
        m = (m + timedelta(days=32)).replace(day=1)
        if m >= end:
            break
        months.append(m)
    n = pop.n
    rows_sub = np.tile(np.arange(n), len(months))
    month_idx = np.repeat(np.arange(len(months)), n)
    k = len(rows_sub)
    daily_gb = exp.data_gb.mean(axis=1)
    used = daily_gb[rows_sub] * 30 * rng.lognormal(0, 0.15, k)
    cap = pop.data_cap_gb[rows_sub]
    over = np.where(np.isfinite(cap), np.maximum(used - cap, 0) * 2.0, 0.0)
    error = rng.random(k) < 0.01
    amount = pop.arpu[rows_sub] * rng.lognormal(0, 0.08, k) + over + error * rng.uniform(5, 40, k)
    bill_ms = np.array([day_start_ms(cfg, 0) + (np.datetime64(mm, "D") - np.datetime64(cfg.start_date, "D"))
                        .astype(np.int64) * DAY_MS for mm in months], np.int64)
    period_ms = np.r_[bill_ms[:1] - 30 * DAY_MS, bill_ms[:-1]]
    table = pa.table({
        "bill_id": ids("B", np.arange(k), 9),
        "subscriber_id": ids("S", rows_sub, 8),
        "bill_date": timestamps_ms(bill_ms[month_idx]),
        "period_start": timestamps_ms(period_ms[month_idx]),
        "amount": np.round(amount, 2).astype(np.float32),
        "overage_amount": np.round(over, 2).astype(np.float32),
        "data_used_gb": np.round(used, 2).astype(np.float32),  # what the xDRs carried, overage and all
        "billing_error": error,
        "paid_on_time": rng.random(k) < 0.95,
    }).cast(BILLING.schema)
    latest_error = error[month_idx == (2 if len(months) >= 3 else 0)][:n] if months else np.zeros(n, bool)
    return table, latest_error


# The BSS account history (issue 11, item 3): the subscribers snapshot is the state on its
# date, the first simulated day at 00:00 UTC; every later change is a dated subscriber_events
# row, so a snapshot taken before a suspension cannot show it.
HISTORY_DAYS = 90  # the event log reaches back this far before the window
SUSPENSION_LATE_SHARE = 0.3  # suspensions the BSS logs minutes after the network barred the line
SUSPENSION_LATE_MEAN_MS = 6 * 60_000
SUSPENSION_LOG_DELAY_MAX_MS = 30 * 60_000  # no suspension is logged later than this
# BSS suspensions the network never applied (order fallout, found by revenue-assurance checks of
# BSS against HSS): a share of the base per day, from a week before the window, most restored
# within hours. The line keeps its service, so the truth has no fault for them.
UNAPPLIED_SUSPENSIONS_PER_DAY = 3e-5
UNAPPLIED_FROM_DAYS = 7
UNAPPLIED_MEDIAN_MS = 6 * HOUR_MS
UNAPPLIED_VOLUNTARY_SHARE = 0.3  # asked for by the customer (travel, a lost phone found again)
# VoLTE provisioning (the BSS/HSS service flag) is not the handset's own setting:
VOLTE_OFF_DEPROVISIONED = 0.2  # handsets switched off through the operator's app, which drops the product too
LEGACY_TENURE_MONTHS = 96  # lines older than the VoLTE launch ...
LEGACY_UNPROVISIONED = 0.5  # ... of which half were never given the product (the default IMS profile serves them)
OTHER_UNPROVISIONED = 0.01
OTHER_DEPROVISIONED = 0.002  # lines de-provisioned in the app with no handset setting changed
VOLTE_MIGRATIONS_PER_DAY = 0.02  # of unprovisioned lines, given the product by a bulk job during the window
PLAN_CHANGES_IN_HISTORY = 0.06  # of the base moved to its current plan in the HISTORY_DAYS before the window
RETIRED_PLANS = {"premium": "Unlimited Plus", "postpaid": "Smart 10GB", "prepaid": "PAYG 2GB",
                 "youth": "Youth 15GB", "enterprise": "Business 50GB"}
CARE_CHANNELS = ("app", "web", "call_centre", "retail_store")


@dataclass
class AccountHistory:
    """What BSS knows of each account: the state on the snapshot date and the dated changes."""

    events: pa.Table  # subscriber_events
    status: np.ndarray  # per subscriber on the snapshot date: active or suspended
    volte_provisioned: np.ndarray  # per subscriber on the snapshot date


def latest_values(sub: np.ndarray, t_ms: np.ndarray, values: np.ndarray, initial: np.ndarray,
                  at_ms: int) -> np.ndarray:
    """Per subscriber, the value of its last event before ``at_ms`` (epoch ms), else ``initial``."""
    keep = t_ms < at_ms
    sub, t_ms, values = sub[keep], t_ms[keep], values[keep]
    order = np.lexsort((t_ms, sub))
    sub, values = sub[order], values[order]
    last = np.r_[sub[1:] != sub[:-1], True] if len(sub) else np.zeros(0, bool)
    out = initial.copy()
    out[sub[last]] = values[last]
    return out


def account_history(cfg: SimConfig, pop: Population, plan: FaultPlan) -> AccountHistory:
    """The BSS view of every account: status changes (the plan's suspensions, logged with a
    delay of up to :data:`SUSPENSION_LOG_DELAY_MAX_MS`, and suspensions the network never
    applied), VoLTE provisioning (legacy lines without it, the share of handsets switched off
    that also lost it) and plan changes. Each part draws from its own stream, per subscriber,
    so the ordinary changes are the same at any fault rate."""
    n, start = pop.n, plan.start_ms
    end = start + plan.n_periods * PERIOD_MS
    history_ms = start - HISTORY_DAYS * DAY_MS
    parts: list[tuple] = []

    def add(who: np.ndarray, t_ms: np.ndarray, kind: str, old, new, reason, channel) -> None:
        k = len(who)
        parts.append((who, np.asarray(t_ms, np.int64), *(np.broadcast_to(np.asarray(v, object), k)
                                                          for v in (kind, old, new, reason, channel))))

    # Suspensions the network applied (the truth's suspension faults), logged on time or late.
    rng = rng_for(cfg.seed, "bss-suspension-log")
    late = rng.random(n) < SUSPENSION_LATE_SHARE
    delay = np.where(late, np.minimum(60_000 + rng.exponential(SUSPENSION_LATE_MEAN_MS, n),
                                      SUSPENSION_LOG_DELAY_MAX_MS), rng.uniform(0, 60_000, n))
    who = np.flatnonzero(np.isfinite(plan.suspended_from_ms))
    add(who, plan.suspended_from_ms[who].astype(np.int64) + delay[who].astype(np.int64),
        "status_change", "active", "suspended", "non_payment", "billing")

    # Suspensions the network never applied, most restored inside the window.
    rng = rng_for(cfg.seed, "bss-unapplied-suspensions")
    count = rng.poisson(UNAPPLIED_SUSPENSIONS_PER_DAY * n * (cfg.days + UNAPPLIED_FROM_DAYS))
    who = rng.choice(n, min(n, count), replace=False)
    t_on = rng.integers(start - UNAPPLIED_FROM_DAYS * DAY_MS, end, len(who))
    t_off = t_on + np.maximum(rng.lognormal(np.log(UNAPPLIED_MEDIAN_MS), 1.0, len(who)), 15 * 60_000).astype(np.int64)
    voluntary = rng.random(len(who)) < UNAPPLIED_VOLUNTARY_SHARE
    care = np.array(CARE_CHANNELS, object)[rng.integers(0, len(CARE_CHANNELS), len(who))]
    keep = ~np.isfinite(plan.suspended_from_ms[who])  # not a line the network really barred
    on = np.where(voluntary, "customer_request", "non_payment")
    channel = np.where(voluntary, care, "billing")
    add(who[keep], t_on[keep], "status_change", "active", "suspended", on[keep], channel[keep])
    add(who[keep], t_off[keep], "status_change", "suspended", "active",
        np.where(voluntary, "customer_request", "payment_received")[keep], channel[keep])

    # VoLTE provisioning: legacy lines without the product, handsets switched off in the app.
    rng = rng_for(cfg.seed, "bss-volte-provisioning")
    legacy = pop.tenure_months > LEGACY_TENURE_MONTHS
    unprovisioned = rng.random(n) < np.where(legacy, LEGACY_UNPROVISIONED, OTHER_UNPROVISIONED)
    toggled = plan.volte_off & (rng.random(n) < VOLTE_OFF_DEPROVISIONED) & ~unprovisioned
    t_toggle = rng.integers(history_ms, start, n)  # the setting predates the window
    add(np.flatnonzero(toggled), t_toggle[toggled], "volte_provisioning", "true", "false",
        "customer_request", "app")
    # ... and lines whose customer dropped the product in the app with the handset's VoLTE left on
    # (a roaming question, a plan migration): as many as the toggled handsets, so the event
    # itself says nothing of the handset
    other_rng = rng_for(cfg.seed, "bss-volte-other-requests")
    asked = ~plan.volte_off & ~unprovisioned & (other_rng.random(n) < OTHER_DEPROVISIONED)
    t_asked = other_rng.integers(history_ms, start, n)
    add(np.flatnonzero(asked), t_asked[asked], "volte_provisioning", "true", "false", "customer_request", "app")
    migrated = unprovisioned & (rng.random(n) < VOLTE_MIGRATIONS_PER_DAY * cfg.days)
    t_migrate = rng.integers(start, end, n)
    add(np.flatnonzero(migrated), t_migrate[migrated], "volte_provisioning", "false", "true",
        "bulk_migration", "provisioning")

    # Plan changes before the window: the current plan came from the other option or a retired one.
    rng = rng_for(cfg.seed, "bss-plan-changes")
    names = np.array([[PLANS[s][k][0] for k in range(2)] for s in SEGMENTS], object)
    current, other = names[pop.segment, pop.plan], names[pop.segment, 1 - pop.plan]
    previous = np.where(other != current, other, np.array([RETIRED_PLANS[s] for s in SEGMENTS], object)[pop.segment])
    changed = rng.random(n) < PLAN_CHANGES_IN_HISTORY
    t_change = rng.integers(history_ms, start, n)
    channel = np.array(CARE_CHANNELS, object)[rng.integers(0, len(CARE_CHANNELS), n)]
    add(np.flatnonzero(changed), t_change[changed], "plan_change", previous[changed], current[changed],
        "customer_request", channel[changed])

    sub, t_ms, kind, old, new, reason, channel = (np.concatenate(c) for c in zip(*parts))
    inside = t_ms < end  # the export ends with the window
    order = np.lexsort((sub[inside], t_ms[inside]))
    sub, t_ms, kind, old, new, reason, channel = (a[inside][order] for a in
                                                  (sub, t_ms, kind, old, new, reason, channel))
    status_events = kind == "status_change"
    volte_events = kind == "volte_provisioning"
    status = latest_values(sub[status_events], t_ms[status_events], new[status_events],
                           np.full(n, "active", object), start)
    volte = latest_values(sub[volte_events], t_ms[volte_events], new[volte_events] == "true", ~unprovisioned, start)
    table = pa.table({
        "event_id": ids("EV", np.arange(len(sub)), 9),
        "subscriber_id": ids("S", sub, 8),
        "event_time": timestamps_ms(t_ms),
        "event_type": kind.astype(str),
        "old_value": old.astype(str),
        "new_value": new.astype(str),
        "reason": reason.astype(str),
        "channel": channel.astype(str),
    }).cast(SUBSCRIBER_EVENTS.schema)
    return AccountHistory(table, status.astype(str), volte)
