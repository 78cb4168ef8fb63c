"""The causes a diagnosis can name: each with its fault domain, the kind of place it is located
at, the words a care agent reads out, and what the customer can do about it.

Domains are the demarcation operators use: ``cloud`` (service platform: DNS, application
servers, CDN, content origin), ``pipe`` (radio, transport, core, fixed access), ``device`` (the
handset's model, firmware or settings), ``account`` (BSS: suspension, data cap) and ``none``
(ordinary conditions, no fault: weak coverage where the customer was, ordinary interference,
busy-hour load, the home Wi-Fi).
"""

from __future__ import annotations

from dataclasses import dataclass

DOMAINS = ("cloud", "pipe", "device", "account", "none")
# Where a conclusion can point; each has the evidence column that names the object (evidence.py).
LOCATION_TYPES = ("subscriber", "device_model", "cell", "site", "grid", "region", "olt", "host", "cdn_node",
                  "program_source", "none")
LOCATION_COLUMN = {"subscriber": "subscriber_id", "device_model": "device_model", "cell": "cell_id",
                   "site": "site_id", "grid": "grid_id", "region": "region", "olt": "olt_id", "host": "host",
                   "cdn_node": "cdn_node", "program_source": "program_source", "none": None}


@dataclass(frozen=True)
class Cause:
    code: str
    domain: str
    location_type: str
    words: str  # what it is, in the operator's words
    user_side: bool = False  # the customer can fix it (self-check)
    fix: str = ""  # what the customer can do, or what the network side is doing


CAUSES: dict[str, Cause] = {c.code: c for c in (
    Cause("suspension", "account", "subscriber", "account suspended", True,
          "Your line is suspended. Pay the open bill or contact us to restore the service."),
    Cause("data_cap_throttling", "account", "subscriber", "monthly data allowance used up: speed reduced", True,
          "You have used this month's data allowance, so your speed is reduced. Buy a data add-on in the app "
          "to get full speed back."),
    Cause("wrong_apn", "device", "subscriber", "wrong APN set on the handset", True,
          "Your phone's mobile data access point (APN) is set wrongly. Reset the APN to the default in "
          "Settings > Mobile network > Access point names, then restart the phone."),
    Cause("volte_off", "device", "subscriber", "VoLTE switched off on the handset", True,
          "Calls are set up over the old network because 4G calling (VoLTE) is off. Turn on VoLTE / 4G "
          "calling in Settings > Mobile network."),
    Cause("firmware_bug", "device", "device_model", "defect in the handset model's firmware", True,
          "Your phone's software version has a known calling defect. Install the latest software update "
          "and restart the phone."),
    Cause("core_degradation", "pipe", "region", "core network degradation in the region", False,
          "We see a problem in our core network in your region and are working on it."),
    Cause("olt_outage", "pipe", "olt", "fixed-access (OLT/PON) outage", False,
          "There is an outage on the fibre equipment serving your home; our engineers are restoring it."),
    Cause("backhaul_degradation", "pipe", "site", "transport (backhaul) degradation at the site", False,
          "The link connecting the mobile site near you is degraded; our engineers are on it."),
    Cause("cell_outage", "pipe", "cell", "cell out of service", False,
          "A mobile cell near you is out of service; your phone uses a farther one until it is back."),
    Cause("sleeping_cell", "pipe", "cell", "sleeping cell (on air, not carrying traffic)", False,
          "A mobile cell near you is not carrying traffic properly; we are resetting it."),
    Cause("congestion", "pipe", "cell", "cell congested (demand above capacity)", False,
          "The mobile cell you use is overloaded right now; speeds recover as demand falls."),
    Cause("interference", "pipe", "cell", "external radio interference on the cell", False,
          "The mobile cell you use suffers radio interference; our engineers are locating its source."),
    Cause("coverage_hole", "pipe", "grid", "coverage hole at the place", False,
          "Coverage where you are is weaker than it should be; we have recorded the place for our planners."),
    Cause("dns_failure", "cloud", "region", "DNS resolution failures in the region", False,
          "Name lookups are failing in our service platform for your region; we are fixing it."),
    Cause("program_source_fault", "cloud", "program_source", "fault at the content's program source", False,
          "The channel or catalogue you watch has a problem at its source; it is not your line."),
    Cause("cdn_degradation", "cloud", "cdn_node", "CDN node degraded", False,
          "The video delivery server for your area is slow; we are moving traffic off it."),
    Cause("app_server_fault", "cloud", "host", "application server errors", False,
          "The service you use is answering with errors; the problem is on its servers, not your line."),
    Cause("weak_coverage", "none", "cell", "weak coverage where the customer was (no fault)", True,
          "Signal was weak where you were. Indoors, moving near a window helps; Wi-Fi calling helps at home."),
    Cause("low_sinr", "none", "cell", "ordinary radio interference at the cell edge (no fault)", False,
          "The signal was noisy where you were, as at the edge of a cell; no fault was found."),
    Cause("busy_hour_load", "none", "cell", "busy-hour load within capacity (no fault)", False,
          "The network was busy at that hour, within its capacity; no fault was found."),
    Cause("home_wifi", "none", "none", "weak home Wi-Fi (no fault on the line)", True,
          "Your line is fine; the Wi-Fi in your home is weak. Move the router into the open or use the 5 GHz band."),
    Cause("cpe_reboot", "none", "none", "home router restarted or lost power (no fault on the line)", True,
          "Your router restarted or lost power. If it keeps happening, check its power supply."),
    Cause("ordinary_variation", "none", "none", "ordinary variation (no fault found)", True,
          "We found no fault. If it happens again, restart your phone."),
)}
CAUSE_CODES = tuple(CAUSES)
NETWORK_DOMAINS = ("pipe", "cloud")
