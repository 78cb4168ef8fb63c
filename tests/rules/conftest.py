"""What the rule tests share: the rule context over the standard catalog, and checked rules
from a YAML body."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencem.indicators.catalog import load_catalog
from opencem.rules.catalog import RuleContext, load_rules
from opencem.schema import TABLES


@pytest.fixture(scope="module")
def ctx() -> RuleContext:
    return RuleContext(load_catalog(TABLES), dict(TABLES))


@pytest.fixture
def rules_of(ctx, tmp_path: Path):
    """rules_of(body): the checked rules of one group whose rules: list is ``body``."""
    def checked(body: str):
        f = tmp_path / "t.rules.yaml"
        f.write_text("groups:\n  - name: g\n    rules:\n" + body)
        rules, issues = load_rules([f], ctx)
        assert [str(i) for i in issues if i.level == "error"] == []
        return rules

    return checked
