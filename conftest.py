"""Nothing to register here: the swavbench pytest plugin loads through its `pytest11` entry point
(pyproject.toml) wherever the package is installed, as in any other repository. Naming it again in
`pytest_plugins` would register it twice."""
