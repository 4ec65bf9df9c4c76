"""Root conftest: skip doctest collection of optional backends that are not installed.

The tests of each extra skip with a reason of their own (see tests/); this only
keeps ``--doctest-modules`` from importing a backend module whose library is absent.
"""

from __future__ import annotations

import importlib.util

from gradproof._extras import EXTRAS

collect_ignore_glob = [
    f"src/gradproof/{subpackage}/*"
    for subpackage, (module, _, _) in EXTRAS.items()
    if importlib.util.find_spec(module) is None
]
