"""Browser tests of the officer console (headless Chromium, see conftest.py)."""
