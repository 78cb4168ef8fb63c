"""The definition language: KPIs, KQIs, the CEI tree, dimensions and cubes as typed models.

This is layer 2 of the definition files (see :mod:`opencem.specfile`): shapes, names and
value ranges. Expressions are checked in :mod:`.expr` and references across definitions in
:mod:`.catalog` (layer 3), so every problem in a file is reported together.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
SERVICES = ("voice", "mobile_data", "video", "iot", "home_broadband")
CHANNELS = ("app", "web", "call_centre", "retail_store", "social")
LIFECYCLE = ("discover", "join", "use", "get_help", "renew_leave")
# 1min and 5min serve stream windows (opencem stream --window), and batch evaluations of them.
GRAINS = {"1min": 60, "5min": 300, "15min": 900, "hour": 3600, "day": 86_400}
Grain = Literal["1min", "5min", "15min", "hour", "day"]


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use lower_snake_case (a-z, 0-9, _), "
                         "starting with a letter")
    return value


Name = Annotated[str, AfterValidator(_name)]


class Strict(BaseModel):
    # inf and nan are no score, weight or threshold: YAML's .inf and .nan are refused.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Better = Literal["higher", "lower", "neither"]  # neither: volumes and counts


class KPI(Strict):
    """An aggregate over the rows of one source table, e.g. ``100 * count_if(dropped) / count(*)``."""

    name: Name
    source: str
    expr: str = Field(min_length=1)
    filter: str | None = Field(default=None, min_length=1)
    unit: str = ""
    # Which way is good: --worst and diagnosis rank by it (a drop rate is better lower).
    better: Better | None = None
    description: str = ""
    reference: str | None = None


class Score(Strict):
    """Maps a KQI value to 0-100, piecewise-linear and clamped at both ends.

    ``good``/``bad`` give the values that score 100 and 0 (direction follows: good > bad means
    higher is better); ``points`` gives the curve as [value, score] pairs instead.
    """

    good: float | None = None
    bad: float | None = None
    points: list[tuple[float, float]] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Score:
        if self.points is None:
            if self.good is None or self.bad is None:
                raise ValueError("give both good and bad (the values scoring 100 and 0), or points")
            if self.good == self.bad:
                raise ValueError(f"good and bad are both {self.good}; they must differ")
            return self
        if self.good is not None or self.bad is not None:
            raise ValueError("give either good/bad or points, not both")
        xs = [x for x, _ in self.points]
        if len(xs) < 2 or any(b <= a for a, b in zip(xs, xs[1:])):
            raise ValueError("points need at least two [value, score] pairs with increasing values")
        if any(not 0 <= s <= 100 for _, s in self.points):
            raise ValueError("every score in points must be within 0..100")
        return self

    def breakpoints(self) -> list[tuple[float, float]]:
        """(value, score) pairs in increasing value order."""
        if self.points is not None:
            return [tuple(p) for p in self.points]
        return sorted([(self.bad, 0.0), (self.good, 100.0)])

    @property
    def better(self) -> str | None:
        """higher or lower, as the score rises from the lowest value to the highest; None for a
        curve that scores both ends alike (an optimum in between)."""
        pts = self.breakpoints()
        if pts[0][1] == pts[-1][1]:
            return None
        return "higher" if pts[0][1] < pts[-1][1] else "lower"


class KQI(Strict):
    """A quality indicator: an expression of KPIs scored to 0-100, attached to one service,
    channel or lifecycle stage."""

    name: Name
    expr: str = Field(min_length=1)
    service: Literal[SERVICES] | None = None  # type: ignore[valid-type]
    channel: Literal[CHANNELS] | None = None  # type: ignore[valid-type]
    lifecycle: Literal[LIFECYCLE] | None = None  # type: ignore[valid-type]
    unit: str = ""
    better: Better | None = None  # stated, or read from the score's direction
    description: str = ""
    score: Score
    reference: str | None = None

    @model_validator(mode="after")
    def _one_attachment(self) -> KQI:
        given = [k for k in ("service", "channel", "lifecycle") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("attach the KQI to exactly one of service, channel or lifecycle "
                             f"(found {', '.join(given) or 'none'})")
        if self.better and self.score.better and self.better != self.score.better:
            raise ValueError(f"better: {self.better} contradicts the score, which rises as the value "
                             f"gets {'higher' if self.score.better == 'higher' else 'lower'}")
        return self

    @property
    def direction(self) -> str | None:
        return self.better or self.score.better

    @property
    def attached_to(self) -> tuple[str, str]:
        kind = next(k for k in ("service", "channel", "lifecycle") if getattr(self, k))
        return kind, getattr(self, kind)


class IndexNode(Strict):
    """One branch of the CEI tree: a weighted mean of KQI scores (e.g. the voice index).

    In a ``mode: extend`` section a node named like one in force changes only what it gives
    (its KQIs are added to the node's, a weight replaces the old one), so weight and kqis may
    be left out there; the tree in force must have both for every node (checked in the catalog).
    """

    name: Name
    weight: float | None = Field(default=None, gt=0)
    kqis: dict[str, float] = Field(default_factory=dict)
    poor_below: float | None = Field(default=None, ge=0, le=100)
    description: str = ""

    @field_validator("kqis")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [f"{k}={w}" for k, w in value.items() if not w > 0]
        if bad:
            raise ValueError(f"KQI weights must be positive ({', '.join(bad)})")
        return value


Mode = Literal["replace", "extend"]


class CEI(Strict):
    """The Customer Experience Index: a weighted mean of the index nodes; weights of missing
    branches (a customer without video, say) are shared out among the present ones.

    ``mode`` says what a workspace section does to the tree in force: ``replace`` it whole, or
    ``extend`` it (nodes by name, KQIs by name). Left out, it replaces, with a warning.
    """

    mode: Mode | None = None
    poor_below: float = Field(default=60.0, ge=0, le=100)
    indices: list[IndexNode] = Field(default_factory=list)
    description: str = ""


class Resolver(Strict):
    """One way to find a dimension's value for a source row: a column of the row itself,
    a column of a snapshot table looked up by key, or an H3 cell: of the row's own position
    where it has one (a geolocated session, a drive-test sample), else of the serving cell's
    site."""

    column: str | None = None
    lookup: str | None = None  # snapshot table, e.g. cells or subscribers
    key: str | None = None  # column of the source row that matches the lookup table's key
    grid: bool = False  # H3 cell at the cube's grid resolution
    # grid only: use the row's position (location_h3) before the serving site; false places
    # every row at its serving site (a network planning view)
    located: bool = True

    @model_validator(mode="after")
    def _one_way(self) -> Resolver:
        if self.grid:
            if self.lookup or self.column:
                raise ValueError("a grid resolver takes no column or lookup")
            return self
        if "located" in self.model_fields_set:
            raise ValueError("located applies to a grid resolver only")
        if not self.column:
            raise ValueError("give the column (and lookup with key to read it from a snapshot table)")
        if bool(self.lookup) != bool(self.key):
            raise ValueError("lookup and key go together")
        return self


class Dimension(Strict):
    name: Name
    description: str = ""
    resolve: list[Resolver] = Field(min_length=1)


class Cube(Strict):
    """A dimension set to materialise, at one or more time grains."""

    dimensions: list[str] = Field(default_factory=list)  # none: one row per time bucket
    grains: list[Grain] = Field(default_factory=lambda: ["day"], min_length=1)
    grid_resolution: int = Field(default=8, ge=0, le=15)
    # Evidence rule: a KQI is scored only where its sources have at least this many records in
    # the group (a quarter-hour with two sessions says little about a cell). PM counters are
    # exempt: each counter row already aggregates a whole period of events.
    min_samples: int = Field(default=1, ge=1)
    # Pooling: a group under min_samples (but with records) takes its KQI scores from the
    # coarser period holding it, e.g. a thin quarter-hour from its hour (docs/indicators.md).
    pool: Grain | None = None
    # Kept up to date per window by `opencem stream` (docs/stream.md), as well as evaluated in batch.
    stream: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _pool(self) -> Cube:
        if self.pool is not None:
            if self.min_samples <= 1:
                raise ValueError("pool takes thin groups' scores from a coarser period, so it needs min_samples above 1")
            if not any(GRAINS[self.pool] > GRAINS[g] for g in self.grains):
                raise ValueError(f"pool {self.pool} must be coarser than a grain of the cube ({', '.join(self.grains)})")
        return self

    def table(self, grain: str) -> str:
        """cube_<dimensions>_<grain>, each dimension without an ``_id`` suffix (cube_cell_day)."""
        return "cube_" + "_".join(d.removesuffix("_id") for d in self.dimensions or ["total"]) + "_" + grain


class CubeSection(Strict):
    """``cubes: {mode: extend, list: [...]}``: add cubes to those in force (a cube of the same
    dimensions and grain replaces that one), or ``mode: replace`` them all. A bare list
    replaces them all, with a warning."""

    mode: Mode
    list_: list[Cube] = Field(default_factory=list, alias="list")


class DefinitionFile(Strict):
    """One YAML file; any section may be absent."""

    kpis: list[KPI] = Field(default_factory=list)
    kqis: list[KQI] = Field(default_factory=list)
    cei: CEI | None = None
    dimensions: list[Dimension] = Field(default_factory=list)
    cubes: list[Cube] | CubeSection | None = None
