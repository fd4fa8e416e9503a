"""The tests' support code, in one place: the development database (devdb),
service processes (procs), HTTP helpers that poll for states (helpers), tokens
and a JWKS server (authkit), and the suite-wide checks every response and query
go through (openapi_check, index_coverage). The fixtures are in tests/conftest.py."""
