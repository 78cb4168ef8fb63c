"""Who uses the network: subscribers with segments, value, devices and daily places;
enterprise IoT fleets; home broadband lines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..schema.customers import SUBSCRIBERS
from .config import SimConfig, rng_for
from .devices import DEVICE_EFFICIENCY, DEVICE_NAMES, DEVICE_RX_LOSS_DB, DEVICES, DeviceModel  # noqa: F401
from .geography import Network, RadioLink, sample_places, serve, territory_scale
from .ids import ids, take


IOT_MODULES = ("NBM-100", "NBM-200", "LTEM-CAT1")
CPE_MODELS = ("HomeGate 3", "HomeGate 4 WiFi6", "FiberBox 2")

SEGMENTS = ("premium", "postpaid", "prepaid", "youth", "enterprise")
SEGMENT_SHARE = np.array([0.08, 0.42, 0.35, 0.10, 0.05])
SEGMENT_ARPU_EUR = np.array([75.0, 35.0, 12.0, 18.0, 55.0])
SEGMENT_TENURE_MONTHS = np.array([60.0, 45.0, 18.0, 20.0, 50.0])
# (plan name, data cap GB or nan for unlimited) per segment, two options each.
PLANS = {
    "premium": (("Unlimited Max", np.nan), ("Unlimited Max", np.nan)),
    "postpaid": (("Smart 20GB", 20.0), ("Smart 50GB", 50.0)),
    "prepaid": (("PAYG 5GB", 5.0), ("Prepaid 10GB", 10.0)),
    "youth": (("Youth 30GB", 30.0), ("Youth 30GB", 30.0)),
    "enterprise": (("Business Pro", 100.0), ("Business Pro", 100.0)),
}
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_BY_SEGMENT = {
    "premium": (0.03, 0.22, 0.30, 0.25, 0.13, 0.07),
    "postpaid": (0.08, 0.22, 0.24, 0.20, 0.15, 0.11),
    "prepaid": (0.22, 0.25, 0.18, 0.14, 0.10, 0.11),
    "youth": (0.85, 0.15, 0.0, 0.0, 0.0, 0.0),
    "enterprise": (0.02, 0.25, 0.33, 0.25, 0.13, 0.02),
}
IOT_SERVICES = ("smoke_sensor", "shared_bike", "smart_meter")
ANCHORS = ("home", "work", "leisure")


@dataclass
class Population:
    n: int
    segment: np.ndarray  # index into SEGMENTS
    arpu: np.ndarray
    tenure_months: np.ndarray
    age_band: np.ndarray
    plan: np.ndarray  # 0/1 option within segment
    home_town: np.ndarray
    device: np.ndarray  # index into DEVICES
    firmware: np.ndarray  # str
    has_job: np.ndarray
    usage_factor: np.ndarray  # heavy users > 1
    anchor_x: np.ndarray  # (n, 3) km
    anchor_y: np.ndarray
    link: list[RadioLink]  # per anchor
    has_broadband: np.ndarray
    line_olt: np.ndarray  # per subscriber, -1 without broadband
    line_plan_kbps: np.ndarray
    wifi_rssi_dbm: np.ndarray
    cpe_model: np.ndarray
    consent_analytics: np.ndarray
    consent_marketing: np.ndarray
    # IoT fleet
    iot_owner: np.ndarray
    iot_service: np.ndarray
    iot_module: np.ndarray
    iot_link: RadioLink
    iot_battery_pct: np.ndarray

    @property
    def subscriber_ids(self) -> pa.Array:
        return ids("S", np.arange(self.n), 8)

    @property
    def data_cap_gb(self) -> np.ndarray:
        caps = np.array([[PLANS[s][k][1] for k in range(2)] for s in SEGMENTS])
        return caps[self.segment, self.plan]

    def province(self, net: Network) -> np.ndarray:
        return net.town_province[self.home_town]


def build_population(cfg: SimConfig, net: Network) -> Population:
    rng = rng_for(cfg.seed, "population")
    n = cfg.subscribers
    segment = rng.choice(len(SEGMENTS), size=n, p=SEGMENT_SHARE)
    arpu = SEGMENT_ARPU_EUR[segment] * rng.lognormal(0, 0.35, n)
    tenure = np.minimum(rng.exponential(SEGMENT_TENURE_MONTHS[segment]), 400).astype(int)
    age_cdf = np.cumsum(np.array([AGE_BY_SEGMENT[s] for s in SEGMENTS]), axis=1)[segment]
    age_band = (rng.random(n)[:, None] > age_cdf).sum(axis=1).clip(0, len(AGE_BANDS) - 1)
    plan = (rng.random(n) < 0.5).astype(int)

    scale = territory_scale(n)
    hx, hy, town = sample_places(rng, n, scale, towns=net.towns)
    # Workplaces concentrate in town centres; leisure places are near home.
    wx, wy, _ = sample_places(rng, n, scale, spread=0.6, towns=net.towns)
    lx, ly = hx + rng.normal(0, 1.5 * scale, n), hy + rng.normal(0, 1.5 * scale, n)
    anchor_x, anchor_y = np.c_[hx, wx, lx], np.c_[hy, wy, ly]

    premium = np.isin(segment, [SEGMENTS.index("premium"), SEGMENTS.index("enterprise")])
    mass = [cfg.device_shares.get(d.name, 0.0) for d in DEVICES] if cfg.device_shares else \
        [d.share_mass for d in DEVICES]
    premium_mix = [d.share_premium for d in DEVICES] if not cfg.device_shares else mass
    p_dev = np.array([premium_mix, mass], float)
    p_dev /= p_dev.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p_dev, axis=1)[np.where(premium, 0, 1)]
    device = (rng.random(n)[:, None] > cdf).sum(axis=1).clip(0, len(DEVICES) - 1)
    # Half the base has taken the latest firmware update.
    oldest = np.array([d.firmware[0] for d in DEVICES])[device]
    latest = np.array([d.firmware[-1] for d in DEVICES])[device]
    firmware = np.where(rng.random(n) < 0.5, latest, oldest)

    five_g = np.array([d.five_g for d in DEVICES])[device]
    # Home and work are indoors (penetration loss varies with the building: 5-30 dB); a
    # leisure place is indoors one time in three.
    link = []
    for a in range(len(ANCHORS)):
        indoor = np.ones(n, bool) if a < 2 else rng.random(n) < 0.35
        loss = np.where(indoor, np.clip(rng.normal(14, 5, n), 5, 30), 0.0)
        link.append(serve(net, anchor_x[:, a], anchor_y[:, a], five_g, loss, rng))

    has_bb = rng.random(n) < cfg.broadband_share
    _, olt = net.olt_tree.query(np.c_[hx, hy])
    line_olt = np.where(has_bb, olt, -1)

    n_iot = int(n * cfg.iot_devices_per_subscriber)
    enterprise = np.flatnonzero(segment == SEGMENTS.index("enterprise"))
    if len(enterprise) == 0:
        enterprise = np.array([0])
    # A few big fleets and many small ones (Zipf-like owner sizes).
    owner_weight = 1.0 / np.arange(1, len(enterprise) + 1) ** 1.1
    iot_owner = enterprise[rng.choice(len(enterprise), n_iot, p=owner_weight / owner_weight.sum())]
    fleet_service = rng.integers(0, len(IOT_SERVICES), n)  # service per owner
    iot_service = fleet_service[iot_owner]
    ix, iy, _ = sample_places(rng, n_iot, scale, spread=1.3, towns=net.towns)
    # Meters sit in basements and cabinets, smoke sensors indoors, bikes in the street.
    penetration = np.array([16.0, 0.0, 30.0])[iot_service] + rng.normal(0, 5, n_iot) * (iot_service != 1)
    iot_link = serve(net, ix, iy, np.zeros(n_iot, bool), np.clip(penetration, 0, 40), rng)

    return Population(
        n=n, segment=segment, arpu=arpu, tenure_months=tenure, age_band=age_band, plan=plan,
        home_town=town, device=device, firmware=firmware,
        has_job=(age_band < AGE_BANDS.index("65+")) & (rng.random(n) < 0.78),
        usage_factor=rng.lognormal(-0.18, 0.6, n),
        anchor_x=anchor_x, anchor_y=anchor_y, link=link,
        has_broadband=has_bb, line_olt=line_olt,
        line_plan_kbps=rng.choice([100_000, 300_000, 1_000_000], n, p=[0.35, 0.45, 0.2]).astype(float),
        wifi_rssi_dbm=np.clip(rng.normal(-58, 9, n), -88, -30),
        cpe_model=rng.integers(0, len(CPE_MODELS), n),
        consent_analytics=rng.random(n) < 0.85, consent_marketing=rng.random(n) < 0.45,
        iot_owner=iot_owner, iot_service=iot_service,
        iot_module=rng.integers(0, len(IOT_MODULES), n_iot), iot_link=iot_link,
        iot_battery_pct=rng.uniform(15, 100, n_iot),
    )


def subscribers_table(pop: Population, net: Network, status: np.ndarray,
                      volte_provisioned: np.ndarray) -> pa.Table:
    """The ``subscribers`` snapshot as BSS would export it on its date: ``status`` and
    ``volte_provisioned`` per subscriber as they stood then (``behaviour.account_history``;
    later changes are dated ``subscriber_events``)."""
    seg_names = np.array(SEGMENTS)[pop.segment]
    plan_names = np.array([[PLANS[s][k][0] for k in range(2)] for s in SEGMENTS])[pop.segment, pop.plan]
    line_ids = ids("BB", np.arange(pop.n), 8)
    cols = {
        "subscriber_id": pop.subscriber_ids,
        "segment": seg_names,
        "plan": plan_names,
        "data_cap_gb": pa.array(pop.data_cap_gb.astype("float32"), mask=np.isnan(pop.data_cap_gb)),
        "arpu_monthly": np.round(pop.arpu, 2).astype("float32"),
        "tenure_months": pop.tenure_months.astype("int16"),
        "age_band": take(list(AGE_BANDS), pop.age_band),
        "city": take(net.town_names, pop.home_town),
        "province": take(list(net.provinces), pop.province(net)),
        "home_cell_id": net.cell_ids[pop.link[0].cell],
        "device_model": take(DEVICE_NAMES, pop.device),
        "device_firmware": pop.firmware,
        # The line's provisioning, not the handset's own switch (which BSS does not see).
        "volte_enabled": volte_provisioned,
        "has_broadband": pop.has_broadband,
        "broadband_line_id": pc.if_else(pa.array(pop.has_broadband), line_ids,
                                        pa.scalar(None, pa.string())),
        "status": status,
        "consent_analytics": pop.consent_analytics,
        "consent_marketing": pop.consent_marketing,
    }
    return pa.table(cols).cast(SUBSCRIBERS.schema)

