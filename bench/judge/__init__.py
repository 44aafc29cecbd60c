"""Judging stored runs: statistics per (host, platform, N) (`summary`), phase
anomalies (`anomalies`), the tests behind both gates (`verdict`), what
must match for runs to be compared (`comparability`), `bench ab` (`ab`), `bench
compare` (`compare`) and a CI job's runs as a series (`history`). Reads results
only, never an engine."""
