"""Renderers: a Report as terminal text, HTML or JSON. They read results; they compute nothing.

``words`` holds every phrase, verdict band and colour that more than one of them (or the
plots) uses. Result types are imported for typing only.
"""
