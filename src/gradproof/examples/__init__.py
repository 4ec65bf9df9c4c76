"""Worked examples: the seeds' fraud-detection network (:mod:`gradproof.examples.fraud`)."""
