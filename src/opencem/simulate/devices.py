"""The handsets subscribers carry: models, firmware, market shares and radio class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeviceModel:
    name: str
    five_g: bool
    screen_size_inch: float
    evs: bool  # supports the EVS codec
    firmware: tuple[str, ...]
    share_premium: float
    share_mass: float
    chipset: str = ""
    # Radio class: antenna and RF front-end loss against a reference handset (dB), and how
    # close the modem gets to the Shannon bound (spectral efficiency share)
    rx_loss_db: float = 0.0
    efficiency: float = 0.75


DEVICES = (
    DeviceModel("Aurora X5", True, 6.7, True, ("14.2.1", "14.3.0"), 0.30, 0.06, "Apex S3", 0.0, 0.80),
    DeviceModel("Nimbus 11 Pro", True, 6.1, True, ("11.0.4", "11.1.0"), 0.30, 0.07, "Apex S3", 0.5, 0.80),
    DeviceModel("Vega M2", True, 6.4, True, ("2.8", "3.0"), 0.15, 0.08, "Tern 9", 1.0, 0.76),
    DeviceModel("Pico A54", True, 6.4, False, ("A54.7", "A54.8"), 0.08, 0.16, "Tern 7", 2.0, 0.72),
    DeviceModel("Kite Z3", True, 6.6, False, ("Z3-120", "Z3-131"), 0.07, 0.15, "Lark 5G", 2.5, 0.70),
    DeviceModel("Aurora X4", False, 6.1, True, ("13.9",), 0.05, 0.10, "Apex S1", 1.0, 0.74),
    DeviceModel("Pico A23", False, 6.5, False, ("A23.4", "A23.5"), 0.03, 0.22, "Lark 4", 3.0, 0.66),
    DeviceModel("Orbit Lite", False, 5.5, False, ("1.4",), 0.01, 0.12, "Lark 4", 3.5, 0.64),
    DeviceModel("Feature F1", False, 2.4, False, ("F1.0",), 0.01, 0.04, "Wren 2", 4.0, 0.55),
)
DEVICE_RX_LOSS_DB = np.array([d.rx_loss_db for d in DEVICES])
DEVICE_EFFICIENCY = np.array([d.efficiency for d in DEVICES])
DEVICE_NAMES = [d.name for d in DEVICES]
