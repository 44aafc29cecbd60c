"""Commands whose work is not a run: `bench clean` (`clean`: finds and removes
what bench left, never anything it did not create) and `bench doctor` (`doctor`:
what this host can run, and why not)."""
