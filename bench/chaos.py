"""The chaos run (issue 24): three replicas on one FerretDB, a seeded schedule of
work, control requests and faults, and invariant checks at the end. See
tests/chaos/ for the parts and tests/chaos/run.py for the options.

    python bench/chaos.py --seed 7 --duration 90 --markdown chaos.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.chaos.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
