"""The package version, kept apart so the CLI can print it without importing anything heavy.

It sorts after 0.3.0, the upstream SDK's last release on the package index, so an upgrade never goes backwards.
"""

__version__ = "0.4.0"
