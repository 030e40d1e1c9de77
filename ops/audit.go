package ops

import (
	"context"
	"time"

	"github.com/uims/uims/audit"
)

// AuditState is the verified state of a message's audit chain
// (PROTOCOL.md §15) as a timeline shows it.
type AuditState struct {
	// State is "verified", "broken", "none" (no record found) or
	// "unavailable" (the stream could not be read).
	State string `json:"state"`
	// Summary is what the page shows: "verified (3 records)", "BROKEN —
	// missing record 2".
	Summary  string          `json:"summary"`
	Records  []audit.Located `json:"records,omitempty"`
	Findings []audit.Finding `json:"findings,omitempty"`
}

// auditLookback is how far before a message's first step the audit
// stream is read: its first record is stored after it, batched.
const auditLookback = time.Minute

// auditOf verifies the audit chain of one message: the stream's batches
// from a minute before the message's first step (first, Unix ms; 0: the
// whole stream) to a minute after its last (last, for a message in a
// final state; 0: to the stream's end), checked with the brokers' public
// keys. Bounding both ends keeps an old message's timeline from reading
// every batch stored since.
func (s *Server) auditOf(ctx context.Context, msgID string, first, last int64) *AuditState {
	var since, until time.Time
	if first > 0 {
		since = time.UnixMilli(first).Add(-auditLookback)
	}
	if last > 0 {
		until = time.UnixMilli(last).Add(auditLookback)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v := &audit.Verifier{Keys: s.cfg.AuditKeys, Only: msgID, ChainStart: true, Now: s.obs.cfg.Now(), Slack: 5 * time.Minute}
	rep, err := audit.VerifyRange(ctx, s.js, v, since, until)
	if err != nil {
		s.log.Warn().Err(err).Str("msg_id", msgID).Msg("audit stream")
		return &AuditState{State: "unavailable", Summary: "unavailable: " + err.Error()}
	}
	tx := rep.Tx(msgID)
	st := &AuditState{State: "verified", Summary: tx.Summary(), Records: tx.Records, Findings: tx.Findings}
	switch {
	case len(tx.Findings) > 0:
		st.State = "broken"
	case len(tx.Records) == 0:
		st.State = "none"
	}
	return st
}
