"""The pytest plugin of durable_workflows (entry point `pytest11`): the `durable` fixture.

    def test_a_month_long_trial(durable):
        handle = durable.run("trial", "ada@example.com")
        assert handle.state == "paused"            # waiting for "converted", for 30 days
        durable.advance("30 days")
        assert handle.refresh().result() == "expired"

The fixture keeps one virtual clock for the test (see durable_workflows.testing) and needs
database access, as any test that runs workflows does (`django_db`, or a `TestCase`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def durable() -> Iterator[Any]:
    # Imported here: pytest loads plugins before Django is set up.
    from durable_workflows.testing import Durable, virtual_clock

    with virtual_clock() as clock:
        yield Durable(clock)
