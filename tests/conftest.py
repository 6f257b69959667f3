"""Fixtures shared by every tier: the lab fleets (tests/lab/fixtures.py) serve the lab and e2e tests alike."""

pytest_plugins = ("tests.lab.fixtures",)
