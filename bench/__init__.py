"""bench: measure containers against virtual machines on your own hardware."""

__version__ = "0.1.0"

# Bumped whenever the layout or meaning of files under results/<run-id>/ changes;
# readers refuse (or migrate) results written with another major version.
SCHEMA_VERSION = 1
