"""The record model and where it is kept: every stored field with its unit and
direction (`records`), the one exception root and exit codes (`errors`), units,
platform kinds, percentiles (`stats`), validated names and addresses, the platform
keys every backend shares (`settings`), bench's own folders (`paths`), run folders
written and read back (`results`) and who owns what bench creates (`owner`).
Nothing here reads a machine or judges a run: every other package builds on it."""
