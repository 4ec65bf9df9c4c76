"""Shared fixtures and tolerances."""

from __future__ import annotations

import numpy as np
import pytest

# The notebook's numbers reproduce to about 1e-12 (the last digit depends on the BLAS
# kernel); 1e-9 relative is the tolerance the issue states.
NOTEBOOK_RTOL = 1e-9


@pytest.fixture
def fraud_case():
    from gradproof.examples import fraud

    return fraud.gradient_check_n_test_case()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# A local Dask cluster of two worker processes, for the Dask and fault tests.
LOCAL_CLUSTER = dict(
    n_workers=2,
    threads_per_worker=1,
    processes=True,
    host="127.0.0.1",
    dashboard_address=None,
    # Without a dashboard the scheduler still serves /health on port 8787, and warns when
    # another cluster holds that port: any free port on the loopback instead.
    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
)


@pytest.fixture
def layout_builds(monkeypatch):
    """A count of the points the engine builds on the host (``Layout.build`` calls) from
    here on: ``{"n": calls}``. Resident evaluation must leave it at 0."""
    from gradproof._engine.tree import Layout

    builds = {"n": 0}
    real_build = Layout.build

    def counting_build(self, *args, **kwargs):
        builds["n"] += 1
        return real_build(self, *args, **kwargs)

    monkeypatch.setattr(Layout, "build", counting_build)
    return builds
