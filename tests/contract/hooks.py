"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by test_fuzz.py)."""
from __future__ import annotations

import schemathesis

# The service accepts a CSV under these media types too; they travel as text.
schemathesis.serializer.alias(["application/csv", "application/vnd.ms-excel"], "text/plain")
