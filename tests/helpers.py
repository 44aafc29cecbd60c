"""Small test doubles shared by unit and integration tests."""


class MemorySink:
    """Collects what the runner would write to results/<run-id>/."""

    def __init__(self):
        self.samples, self.steps = [], []

    def add_samples(self, rows):
        self.samples += rows

    def add_step(self, row):
        self.steps.append(row)
