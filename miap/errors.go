package miap

import (
	"errors"
	"fmt"
	"time"

	"github.com/uims/uims/schemas"
)

// Verification errors (§9). Each maps to one wire code; the peer gets the
// code, the detail stays in the verifier's log.
var (
	ErrMalformed    = errors.New("miap: malformed frame")
	ErrTooLarge     = errors.New("miap: frame too large")
	ErrBadVersion   = errors.New("miap: unsupported version")
	ErrWrongPurpose = errors.New("miap: unexpected purpose")
	ErrUnknownKey   = errors.New("miap: unknown or retired key id")
	ErrBadMAC       = errors.New("miap: MAC does not verify")
	ErrStale        = errors.New("miap: timestamp older than the window")
	ErrClockSkew    = errors.New("miap: timestamp ahead of server time")
	ErrReplay       = errors.New("miap: nonce already used")
	ErrBadSession   = errors.New("miap: session key unknown, used or expired")
	ErrIDMismatch   = errors.New("miap: ID does not match")
	ErrBadTicket    = errors.New("miap: ticket does not verify")
	ErrDigest       = errors.New("miap: content digest mismatch")
	ErrExpired      = errors.New("miap: authorisation expired")
	ErrStore        = errors.New("miap: nonce store unavailable")
	ErrQuarantine   = errors.New("miap: replay state lost, refusing frames of the lost window")
	ErrStateLost    = errors.New("miap: nonce store epoch changed")
)

// SkewError is returned for a timestamp ahead of the verifier's clock; it
// carries the server time so that the sender can correct its clock (§7.1).
type SkewError struct {
	ServerTime int64 // Unix ms
	FrameTime  int64
}

func (e *SkewError) Error() string {
	return fmt.Sprintf("miap: timestamp %d is %v ahead of server time %d", e.FrameTime, time.Duration(e.FrameTime-e.ServerTime)*time.Millisecond, e.ServerTime)
}

func (e *SkewError) Unwrap() error { return ErrClockSkew }

// CodeOf maps an error from this package to its wire code.
func CodeOf(err error) schemas.Code {
	var se *schemas.Error
	switch {
	case err == nil:
		return schemas.CodeOK
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, ErrBadTicket): // before BAD_MAC: a ticket that does not verify wraps its cause
		return schemas.CodeBadTicket
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrWrongPurpose):
		return schemas.CodeMalformed
	case errors.Is(err, ErrTooLarge):
		return schemas.CodeTooLarge
	case errors.Is(err, ErrBadVersion):
		return schemas.CodeBadVersion
	case errors.Is(err, ErrUnknownKey):
		return schemas.CodeUnknownKey
	case errors.Is(err, ErrBadMAC):
		return schemas.CodeBadMAC
	case errors.Is(err, ErrStale):
		return schemas.CodeStale
	case errors.Is(err, ErrClockSkew):
		return schemas.CodeClockSkew
	case errors.Is(err, ErrReplay):
		return schemas.CodeReplay
	case errors.Is(err, ErrBadSession):
		return schemas.CodeBadSession
	case errors.Is(err, ErrIDMismatch):
		return schemas.CodeIDMismatch
	case errors.Is(err, ErrBadSeal):
		return schemas.CodeBadSeal
	case errors.Is(err, ErrDigest):
		return schemas.CodeDigestMismatch
	case errors.Is(err, ErrExpired):
		return schemas.CodeExpired
	case errors.Is(err, ErrQuarantine), errors.Is(err, ErrStateLost):
		return schemas.CodeQuarantine
	case errors.Is(err, ErrStore):
		return schemas.CodeStoreUnavailable
	}
	return schemas.CodeInternal
}
