package schemas

import "time"

// Audit trail (PROTOCOL.md §15, docs/SECURITY.md "Audit trail"): every
// broker appends a signed, hash-chained record of each decision it takes
// to a durable JetStream stream. Package audit reads and verifies it.
const (
	// AuditStream is the JetStream stream of audit batches.
	AuditStream = "UIMS_AUDIT"
	// AuditSubjects is its subject filter: uims.audit.<broker instance>.
	AuditSubjects = "uims.audit.>"
	// AuditMaxAge is how long the stream keeps a batch.
	AuditMaxAge = 400 * 24 * time.Hour
	// AuditDuplicates is the stream's de-duplication window: a batch a
	// broker publishes again (its retry) with the same Nats-Msg-Id is
	// stored once.
	AuditDuplicates = 10 * time.Minute
	// HdrAuditSig carries a batch's Ed25519 signature, base64url.
	HdrAuditSig = "Uims-Audit-Sig"
)

// AuditSubject is the subject of the audit batches of a broker instance.
func AuditSubject(instance string) string { return "uims.audit." + subjectToken(instance) }
