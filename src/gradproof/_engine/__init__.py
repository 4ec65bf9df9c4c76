"""The checking engine: from the user's loss, parameters and gradient to a frozen Report.

It knows nothing of rendering, the command line or any framework; see
``docs/architecture.md`` for the pipeline and a map of its modules.
"""
