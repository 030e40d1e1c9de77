// Package schemas holds what the parts of UIMS say to each other: the wire
// types (instant message meta information, routed IMI, acknowledgements,
// status events, client profiles, gateway announcements), the NATS subject
// names, and the stable, append-only list of error codes.
//
// Every component imports schemas and nothing imports a component: the broker,
// the gateways and the processors meet only on the subjects and types defined
// here. The JSON Schema documents in json/ describe the same types for
// implementers in other languages and are normative with PROTOCOL.md §13,
// which specifies every body field by field. Tests keep the schemas, the
// Go types and validate.go in step (TestSchemasMatchGoTypes), check a good
// and a bad document per schema (TestDocumentsValidate), and check every
// body a running fabric puts on NATS against its schema (TestWireBodies).
//
// The authentication of these documents (MIAP) is specified in
// ../miap/PROTOCOL.md; sections are cited as PROTOCOL.md §n.
package schemas
