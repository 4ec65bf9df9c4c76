"""Worked examples: the Gradient Checking notebook's fraud-detection network.

See :mod:`gradproof.examples.fraud`.
"""
