"""The kinds of job the engine runs, by name."""

from __future__ import annotations

from ..runner import Kind
from . import exports, imports, teams

KINDS: dict[str, Kind] = {kind.name: kind for kind in (imports.KIND, exports.KIND, teams.KIND)}
