"""One writer of the concurrency tests, run as its own process: waits for a start time, opens
the store (creating it when new), waits until the other writer has opened it too, and records ``count`` actions under keys shared with the
other writer and ``count`` under its own, one transaction each. Prints how many of the shared
ones it was first to record, and when it began and ended writing (epoch seconds)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sqlalchemy import make_url

from opencem.store import Database, open_store
from opencem.store.repository import record_action


def main(url: str, name: str, count: int, start_at: float, barrier: Path | None = None) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    first = 0
    with open_store(Database(make_url(url), "the test")) as store:
        if barrier is not None:  # writing starts together, however slowly each got here (a loaded CI)
            (barrier / f"ready-{name}").touch()
            deadline = time.time() + 60
            while len(list(barrier.glob("ready-*"))) < 2 and time.time() < deadline:
                time.sleep(0.005)
        time.sleep(max(0.0, start_at + 0.5 - time.time()))
        began = time.time()
        for i in range(count):
            with store.transaction() as session:
                _, created = record_action(session, action_type="sms", subscriber_id=f"S{i}",
                                           idempotency_key=f"shared-{i}")
                first += created
                record_action(session, action_type="sms", subscriber_id=f"S{i}", idempotency_key=f"{name}-{i}")
    print(first, began, time.time())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
         Path(sys.argv[5]) if len(sys.argv) > 5 else None)
