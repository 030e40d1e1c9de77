// Package miap implements MIAP, the message and information authentication
// protocol of UIMS (patent US 7,209,956 figures 3 and 5), as specified in
// PROTOCOL.md in this folder. Code comments cite its sections as §n.
//
// MIAP authenticates every step of a message's way: the time-synchronised
// communication set-up (TSCS login), the instant message meta information
// (IMI) sent to the brokers, the broker's routed IMI with its inner digest ID
// and outer digest, the broker's ticket for the destination gateway, the
// transfer, and the acknowledgements that carry ID back to the brokers.
//
// Every MAC is HMAC-SHA256 over a versioned, purpose- and direction-labelled,
// length-prefixed encoding of the exact bytes sent (§5), under a subkey
// derived with HKDF-SHA256 from the signer's master key for that purpose (§3).
//
// The package is pure: it imports neither NATS nor Redis. Time, randomness and
// keys are injected. The nonce and session-key store is the small Store
// interface; package miapredis implements it on Redis.
package miap
