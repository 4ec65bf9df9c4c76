"""Renderers: a Report as terminal text, HTML or JSON. They read results; they compute nothing."""
