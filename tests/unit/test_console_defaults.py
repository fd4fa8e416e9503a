"""The console's forms show the API's own batch defaults and limits: a
placeholder that names another number than the server uses misleads."""

from __future__ import annotations

import re
from pathlib import Path

from service.api import imports, teams

UPLOADS_JS = Path(__file__).resolve().parents[2] / "service" / "static" / "js" / "uploads.js"


def test_the_batch_size_fields_show_the_apis_defaults_and_maxima():
    shown = {
        kind: (int(default), int(most))
        for kind, default, most in re.findall(r'errorOptions\("(\w+)", (\d+), (\d+)\)', UPLOADS_JS.read_text())
    }

    assert shown == {
        "import": (imports.IMPORT_BATCH, imports.MAX_BATCH),
        "teams": (teams.TEAMS_BATCH, teams.MAX_BATCH),
    }
