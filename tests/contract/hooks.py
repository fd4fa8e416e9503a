"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by test_fuzz.py)."""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

# The service accepts a CSV under these media types too; they travel as text.
schemathesis.serializer.alias(["application/csv", "application/vnd.ms-excel"], "text/plain")


# Headers the service reads besides those the document declares, fuzzed on
# every operation as well as its parameters: byte ranges of any length, keys
# of any printable text, validators and event ids. None may cause a 5xx or a
# response that breaks the document. Values stay under aiohttp's 8 KiB line
# limit (a longer line is aiohttp's own plain-text 400, tested in
# tests/hostile/test_request_bodies.py).
# Visible ASCII, with spaces inside only (a client refuses a value that starts
# or ends with white space before it is sent).
_PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=2000).map(str.strip)
_HOSTILE_HEADERS = {
    "Range": st.one_of(
        _PRINTABLE,
        st.builds(lambda a, b: f"bytes={a}-{b}", st.text("0123456789", max_size=3000), st.text("0123456789", max_size=3000)),
        st.builds(lambda n: f"bytes=-{n}", st.text("0123456789", min_size=1, max_size=3000)),
    ),
    "Idempotency-Key": _PRINTABLE,
    "If-None-Match": _PRINTABLE,
    "Last-Event-ID": _PRINTABLE,
    "Accept": _PRINTABLE,
}


@schemathesis.hook
def flatmap_headers(ctx, headers):
    extra = st.dictionaries(st.sampled_from(sorted(_HOSTILE_HEADERS)), st.just(None), max_size=3).flatmap(
        lambda names: st.fixed_dictionaries({name: _HOSTILE_HEADERS[name] for name in names})
    )
    return extra.map(lambda added: {**(headers or {}), **added})
