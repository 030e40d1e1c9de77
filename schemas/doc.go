// Package schemas holds what the parts of UIMS say to each other: the wire
// types (instant message meta information, routed IMI, acknowledgements,
// status events, client profiles, gateway announcements), the NATS subject
// names, and the stable, append-only list of error codes.
//
// Every component imports schemas and nothing imports a component: the broker,
// the gateways and the processors meet only on the subjects and types defined
// here. The JSON Schema documents in json/ describe the same types for
// implementers in other languages; a test keeps both in step.
//
// The authentication of these documents (MIAP) is specified in
// ../miap/PROTOCOL.md; sections are cited as PROTOCOL.md §n.
package schemas
