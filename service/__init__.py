"""collect-jobs: long-running data jobs that can be paused, resumed and terminated."""

__version__ = "0.1.0"
