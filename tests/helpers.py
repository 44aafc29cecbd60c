"""Small test doubles shared by unit and integration tests."""


class MemorySink:
    """Collects what the runner would write to results/<run-id>/."""

    def __init__(self, scenario=None):
        self.samples, self.steps = [], []
        # The scenario as results/<run-id>/metadata.json stores it.
        self.scenario = scenario.model_dump(mode="json") if scenario is not None else {}
        # What results/<run-id>/metadata.json stores as "searches".
        self.searches = scenario.searches() if scenario is not None else {}

    def add_samples(self, rows):
        self.samples += rows

    def add_step(self, row):
        self.steps.append(row)


class FakeHost:
    """A host whose MemAvailable falls by `per_instance` for each live fake instance."""

    def __init__(self, live, total=2 * 2**30, per_instance=100 * 2**20):
        self._live, self.total, self.per_instance = live, total, per_instance

    def mem_available_bytes(self):
        return self.total - self.per_instance * len(self._live())

    def drop_caches(self):
        return False

    def snapshot_entries(self, dirs):
        return {}

    def new_entries_bytes(self, before):
        return 0

    def memory_facts(self):
        return {}

    def process_memory(self, pids):
        return None
