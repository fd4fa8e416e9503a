"""The chaos run (issue 24): three real replicas on one FerretDB, a seeded
schedule of work, control requests and faults, and checkers of every promise
at the end. ``bench/chaos.py`` runs it from the command line;
``test_chaos_short.py`` runs a few fixed seeds in CI.

plan.py     the schedule, generated from the seed (and replayable as JSON)
inputs.py   the files the schedule uploads, generated from the seed
cluster.py  the database, the replicas, API keys, the faults
driver.py   executes the schedule and records what the API showed
expect.py   the checker's own model: rows, CSV rendering, teams and users
checks.py   the invariants, run at the end
run.py      one run, its summary table, and the command line
"""
