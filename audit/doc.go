// Package audit is the brokers' verifiable audit trail (../miap/PROTOCOL.md
// §15; issue 20): every decision a broker takes on a transaction — the
// route, a conversion step, an acknowledgement with its ID comparison, a
// notification, a reroute, a hold and its release, a cancel, the expiry —
// is a record, chained per transaction to the previous record by SHA-256
// and numbered 1, 2, 3…, and published in batches that the deciding broker
// signs with its Ed25519 audit key (derived from K2, PROTOCOL.md §15.3).
//
// The package holds the record and batch formats (record.go), the
// verification that finds missing, altered and out-of-order records
// (verify.go), and the JetStream side (stream.go): the stream, a batching
// publisher for the brokers, and a reader for `uims audit` and the
// operator view. It depends on miap and schemas only: the brokers, the
// command line and package ops meet on the stream.
package audit
