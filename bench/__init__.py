"""bench: measure containers against virtual machines on your own hardware."""

__version__ = "0.1.0"

# Bumped whenever the layout or meaning of files under results/<run-id>/ changes;
# readers upgrade older versions in memory (bench.model.results.UPGRADES) and refuse newer ones.
SCHEMA_VERSION = 2
