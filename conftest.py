"""Root conftest: skip doctest collection of optional backends that are not installed.

The tests of each extra skip with a reason of their own (see tests/); this only
keeps ``--doctest-modules`` from importing a backend module whose library is absent.
"""

from __future__ import annotations

import importlib.util

OPTIONAL = {
    "torch": "src/gradproof/torch/*",
    "jax": "src/gradproof/jax/*",
    "distributed": "src/gradproof/dask/*",
    "matplotlib": "src/gradproof/plot/*",
}

collect_ignore_glob = [
    pattern for module, pattern in OPTIONAL.items() if importlib.util.find_spec(module) is None
]
