"""Registers the swavbench pytest plugin (options --swavbench-*, the `swavbench` fixture, markers)."""

pytest_plugins = ["swavbench.plugin"]
