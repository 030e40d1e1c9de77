package email

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/uims/uims/gateways/email/mailmsg"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// reply builds an SMTP reply with an enhanced status code (RFC 3463). The
// text is made one safe line.
func reply(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: oneLine(fmt.Sprintf(format, args...), 400)}
}

// oneLine removes control characters (no CR/LF can reach a reply or a
// header) and bounds the length.
func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
		for len(s) > 0 && s[len(s)-1]&0xc0 == 0x80 { // whole runes only
			s = s[:len(s)-1]
		}
		if len(s) > 0 && s[len(s)-1] >= 0xc0 {
			s = s[:len(s)-1]
		}
	}
	return s
}

// relayDenied is the answer to a recipient we would have to relay to.
func relayDenied(detail string) *smtp.SMTPError {
	return reply(550, smtp.EnhancedCode{5, 7, 1}, "Relaying denied: %s", detail)
}

// tempLookup is the answer when a recipient cannot be looked up now.
func tempLookup() *smtp.SMTPError {
	return reply(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure looking up the recipient, try again later")
}

// smtpStatus is the one mapping of a wire code to an SMTP reply code and
// enhanced status code (RFC 5321 §4.2.1, RFC 3463; docs/EMAIL.md,
// "Replies"). The code's class decides the first digit
// (schemas.Code.Class): every temporary failure is 451 4.x.x, so the MTA
// keeps the message and retries; every permanent one is 5xx 5.x.x, so it
// bounces it at once. NO_ROUTE (no live gateway now) and UNREACHABLE (none
// set up to reach the address) are the two sides of X.4.4, "unable to
// route".
func smtpStatus(c schemas.Code) (int, smtp.EnhancedCode) {
	if c.Retryable() {
		if c == schemas.CodeNoRoute {
			return 451, smtp.EnhancedCode{4, 4, 4}
		}
		return 451, smtp.EnhancedCode{4, 3, 0} // store, busy, quarantine, clock, internal
	}
	switch c {
	case schemas.CodeUnknownRecipient:
		return 550, smtp.EnhancedCode{5, 1, 1}
	case schemas.CodeUnreachable:
		return 550, smtp.EnhancedCode{5, 4, 4}
	case schemas.CodeTooLarge:
		return 552, smtp.EnhancedCode{5, 3, 4}
	case schemas.CodeUnsupported:
		return 554, smtp.EnhancedCode{5, 6, 1} // media not supported
	case schemas.CodeConversionFailed:
		return 554, smtp.EnhancedCode{5, 6, 5} // conversion failed
	case schemas.CodeMalformed:
		return 554, smtp.EnhancedCode{5, 6, 0}
	case schemas.CodeExpired:
		return 554, smtp.EnhancedCode{5, 4, 7} // delivery time expired
	case schemas.CodeQuotaExceeded:
		return 550, smtp.EnhancedCode{5, 7, 0} // the daily quota: send again tomorrow (UTC)
	case schemas.CodeNotAllowed, schemas.CodeUnknownSender, schemas.CodeUnauthorized, schemas.CodeRejected:
		return 550, smtp.EnhancedCode{5, 7, 1} // not authorized, message refused
	case schemas.CodeStrictRequired: // gateway in fast mode, brokers in strict mode
		return 554, smtp.EnhancedCode{5, 3, 5} // system incorrectly configured
	case schemas.CodeDuplicate, schemas.CodeSettled:
		return 554, smtp.EnhancedCode{5, 0, 0}
	}
	// The MIAP faults between the gateway and the fabric: keys, MACs,
	// sessions. The operator's to fix.
	return 554, smtp.EnhancedCode{5, 3, 0}
}

// sendReply maps a kit.Send error to an SMTP reply (smtpStatus), with the
// reason when it is meant for the sender.
func sendReply(rcpt string, err error) *smtp.SMTPError {
	code := miap.CodeOf(err)
	var se *schemas.Error
	detail := ""
	if errors.As(err, &se) && se.Detail != "" && !strings.HasPrefix(se.Detail, code.String()+":") {
		switch code {
		case schemas.CodeUnknownRecipient, schemas.CodeTooLarge, schemas.CodeMalformed, schemas.CodeUnsupported,
			schemas.CodeQuotaExceeded, schemas.CodeUnreachable, schemas.CodeRejected, schemas.CodeConversionFailed,
			schemas.CodeNoRoute, schemas.CodeExpired:
			detail = ": " + se.Detail
		}
	}
	text := fmt.Sprintf("<%s>: %s%s (%s)", rcpt, code.Text(), detail, code)
	n, enh := smtpStatus(code)
	if code.Retryable() {
		return reply(n, enh, "%s, try again later", text)
	}
	return reply(n, enh, "%s", text)
}

// extractReply maps a mailmsg.Extract error to an SMTP reply.
func extractReply(err error) *smtp.SMTPError {
	switch {
	case errors.Is(err, mailmsg.ErrTooLarge):
		return reply(552, smtp.EnhancedCode{5, 3, 4}, "Message too large")
	case errors.Is(err, mailmsg.ErrTooDeep), errors.Is(err, mailmsg.ErrTooManyParts), errors.Is(err, mailmsg.ErrTooManyHeaders):
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "Message structure exceeds the limits: %v", err)
	}
	return reply(554, smtp.EnhancedCode{5, 6, 0}, "Malformed message: %v", err)
}

// ackCode maps the enhanced status code (RFC 3463) of a relay's 5xx or of
// a bounce to the wire code of a failed acknowledgement: a permanent code,
// as the relay's answer is.
func ackCode(status string) schemas.Code {
	switch {
	case strings.HasPrefix(status, "5.1.") || strings.HasPrefix(status, "5.2.1"):
		return schemas.CodeUnknownRecipient
	case strings.HasPrefix(status, "5.3.4") || strings.HasPrefix(status, "5.2.3"):
		return schemas.CodeTooLarge
	case strings.HasPrefix(status, "5.4.7"):
		return schemas.CodeExpired
	case strings.HasPrefix(status, "5.4."):
		return schemas.CodeUnreachable // routing: no such domain, unable to route, loop
	case strings.HasPrefix(status, "5.6."):
		return schemas.CodeUnsupported
	case strings.HasPrefix(status, "5.7."):
		return schemas.CodeNotAllowed
	}
	return schemas.CodeRejected // the recipient's side refused it
}

// dsnStatus maps the wire code of a failure to the RFC 3463 status of a
// failed DSN recipient: smtpStatus's, always 5.x.x, as the message failed
// for good (a temporary code here is the cause that lasted until the
// deadline).
func dsnStatus(code string) string {
	c, _ := schemas.ParseCode(code)
	_, e := smtpStatus(c)
	return fmt.Sprintf("5.%d.%d", e[1], e[2])
}

// enhanced returns the "x.y.z" form of an enhanced code, "" when unset.
func enhanced(e smtp.EnhancedCode) string {
	if e == smtp.EnhancedCodeNotSet || e == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}
