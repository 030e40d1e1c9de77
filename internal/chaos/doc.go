// Package chaos is the chaos suite of issue 12 (docs/RELIABILITY.md, "Chaos
// suite"): it runs the scaled topology of scripts/topology.sh as child
// processes of a freshly built `uims` binary (a 3-member NATS cluster,
// redis-server with AOF, two brokers, a processor and the web gateway),
// sends load through it over HTTP (alice → bob, every message retried with
// its Idempotency-Key until the gateway answers for good), and meanwhile
// kills (SIGKILL), pauses (SIGSTOP) and restarts one kind of component at a
// time, a NATS member and a broker together, or makes Redis Sentinel fail
// over. Afterwards it checks the run from the clients' side (which messages
// were accepted) and from the streams (bob's web inbox streams, read as the
// administrator, and every accepted message's final status): no accepted
// message lost, none delivered twice, none with two outcomes. It prints a
// table of scenario × figures.
//
// The scenarios are named after the R-list of the reliability brief
// (R1 baseline, R2 broker crash, R4 NATS member crash, R8 Redis failure and
// Sentinel failover, R10/R15 gateway crash). TestChaos runs them with a
// fault of CHAOS_DURATION (3 s by default, 60 s in `make chaos`) and
// CHAOS_MESSAGES messages per scenario; `go test -short` skips it.
package chaos
