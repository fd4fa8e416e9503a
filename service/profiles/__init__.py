"""Dataset profiles: what a dataset's columns hold, and what a new file changes."""
