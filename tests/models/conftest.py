"""Model tests: use stand-ins (tests/models/_fallback.py) for pieces not yet in main."""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "fastnn_test_fallback", os.path.join(os.path.dirname(__file__), "_fallback.py"))
fallback = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fallback)
fallback.install()
