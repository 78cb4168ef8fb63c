"""What subscribers reach over the network: apps and their hosts, CDN nodes, program sources."""

from __future__ import annotations

import numpy as np

CDN_NODES = ("cdn-coastal-01", "cdn-coastal-02", "cdn-inland-01", "cdn-national-01")
PROGRAM_SOURCES = ("ch-news", "ch-sports", "ch-kids", "ch-movies", "streamflix-catalogue", "clipshare-ugc")

# (name, share, median bytes, demand kbps, hosts)
APPS = (
    ("web_browsing", 0.28, 1.5e6, 20_000, ("news.example", "shop.example", "search.example")),
    ("social", 0.25, 4e6, 15_000, ("social.example", "photos.example")),
    ("messaging", 0.20, 8e4, 2_000, ("chat.example",)),
    ("music", 0.08, 5e6, 320, ("music.example",)),
    ("maps", 0.05, 1e6, 5_000, ("maps.example",)),
    ("gaming", 0.06, 3e5, 1_000, ("game.example",)),
    ("software_update", 0.03, 8e7, 200_000, ("updates.example",)),
    ("cloud_storage", 0.05, 1e7, 100_000, ("drive.example",)),
)
HOSTS = tuple(h for a in APPS for h in a[4])
HOST_RTT_MS = np.linspace(8, 60, len(HOSTS))
