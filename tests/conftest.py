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
