"""Shared fixtures: a simulated operator ingested once per session, local services, shared data."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from opencem.lake import Lake
from opencem.ingest.load import ingest
from opencem.simulate.config import SimConfig
from opencem.simulate.run import simulate

PROJECT = Path(__file__).resolve().parents[1]
EXTERNAL = PROJECT.parent / "shared" / "data" / "external"
SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
    "mqtt": ("127.0.0.1", 1883),
    "nats": ("127.0.0.1", 4222),
}
# The standard test operator: big enough for stable distributions, small enough for CI.
SIM = SimConfig(subscribers=10_000, days=2, seed=11)


def require_service(name: str) -> tuple[str, int]:
    """Skip (or fail, with OPENCEM_REQUIRE_SERVICES=1) when a local service is unreachable."""
    host, port = SERVICES[name]
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as err:
        message = f"{name} is not reachable on {host}:{port} ({err})"
        if os.environ.get("OPENCEM_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and OPENCEM_REQUIRE_SERVICES=1")
        pytest.skip(message)
    return host, port


def external(*parts: str) -> Path:
    """A file under ../shared/data/external, or skip when the shared folder is absent."""
    path = EXTERNAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def spark_or_skip():
    """A Spark session on local[2], or skip (fail with OPENCEM_REQUIRE_SERVICES=1) when Java is absent."""
    from opencem.engines.spark import EngineError, find_java, spark_session

    if find_java() is None:
        message = "Java is not installed, so Spark cannot run"
        if os.environ.get("OPENCEM_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        return spark_session(2)
    except EngineError as err:
        if "already running" in str(err):  # an earlier test chose the threads; any session will do
            return spark_session()
        pytest.fail(str(err))


@pytest.fixture
def engine_ready(request):
    """For tests parametrised by ``engine``: Spark is started (or the test skipped) when it is spark."""
    if request.getfixturevalue("engine") == "spark":
        spark_or_skip()


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "operator"
    simulate(SIM, out)
    return out


@pytest.fixture(scope="session")
def lake(sim_dir, tmp_path_factory) -> Lake:
    """The standard operator ingested into a fresh lake (read-only for tests)."""
    lake = Lake(tmp_path_factory.mktemp("ws") / "lake")
    ingest(lake, [sim_dir])
    return lake


@pytest.fixture(scope="session")
def truth_dir(sim_dir) -> Path:
    """The standard operator's truth folder (never ingested)."""
    return sim_dir / "truth"


@pytest.fixture(scope="session")
def truth_db(lake, truth_dir):
    """The lake's views plus the simulator's truth as ``truth.*``: for scoring tests only."""
    from opencem.simulate.truth import connect_with_truth

    con = connect_with_truth(lake, truth_dir)
    yield con
    con.close()


@pytest.fixture(scope="session")
def db(lake):
    from opencem.engines.duckdb import connect

    con = connect(lake)
    yield con
    con.close()
