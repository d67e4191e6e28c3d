"""Real local servers that the tests and the benchmarks start: a PostgreSQL server from the
Debian binaries (TLS, password auth) and a TCP proxy that can cut or silence a connection."""
