// Package integration is an example of testing an esmill service end to
// end with testcontainers: the bank of examples/bank, wired as in
// examples/twoprocess (worker processes behind a command bus over Redis
// Streams, balances projected into PostgreSQL), against SierraDB, Redis and
// PostgreSQL in containers. The package holds only its tests; see README.md.
package integration
