"""Helpers and independent references shared by the test modules (``from support.x import y``).

Test modules import from here, never from each other or from ``conftest``.
"""
