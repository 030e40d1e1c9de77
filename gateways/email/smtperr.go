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

// sendReply maps a kit.Send error to an SMTP reply: temporary codes give
// 451 so the MTA retries (docs/RELIABILITY.md, Hand-over), the others a 5xx with the reason.
func sendReply(rcpt string, err error) *smtp.SMTPError {
	code := miap.CodeOf(err)
	var se *schemas.Error
	detail := ""
	if errors.As(err, &se) && se.Detail != "" {
		switch code {
		case schemas.CodeUnknownRecipient, schemas.CodeTooLarge, schemas.CodeMalformed, schemas.CodeUnsupported,
			schemas.CodeQuotaExceeded:
			detail = ": " + se.Detail
		}
	}
	text := fmt.Sprintf("<%s>: %s%s (%s)", rcpt, code.Text(), detail, code)
	if code.Retryable() {
		return reply(451, smtp.EnhancedCode{4, 3, 0}, "%s, try again later", text)
	}
	switch code {
	case schemas.CodeUnknownRecipient:
		return reply(550, smtp.EnhancedCode{5, 1, 1}, "%s", text)
	case schemas.CodeTooLarge:
		return reply(552, smtp.EnhancedCode{5, 3, 4}, "%s", text)
	case schemas.CodeUnsupported, schemas.CodeConversionFailed:
		return reply(554, smtp.EnhancedCode{5, 6, 1}, "%s", text)
	case schemas.CodeMalformed:
		return reply(554, smtp.EnhancedCode{5, 6, 0}, "%s", text)
	case schemas.CodeQuotaExceeded:
		return reply(550, smtp.EnhancedCode{5, 7, 0}, "%s", text)
	case schemas.CodeNotAllowed, schemas.CodeUnknownSender, schemas.CodeUnauthorized:
		return reply(550, smtp.EnhancedCode{5, 7, 1}, "%s", text)
	case schemas.CodeStrictRequired: // gateway in fast mode, brokers in strict mode
		return reply(554, smtp.EnhancedCode{5, 3, 5}, "%s", text) // RFC 3463: system incorrectly configured
	}
	return reply(554, smtp.EnhancedCode{5, 0, 0}, "%s", text)
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

// ackCode maps an enhanced status code (RFC 3463) from a relay or a bounce
// to the wire code of a failed acknowledgement.
func ackCode(status string) schemas.Code {
	switch {
	case strings.HasPrefix(status, "5.1.") || strings.HasPrefix(status, "5.2.1"):
		return schemas.CodeUnknownRecipient
	case strings.HasPrefix(status, "5.3.4") || strings.HasPrefix(status, "5.2.3"):
		return schemas.CodeTooLarge
	case strings.HasPrefix(status, "5.6."):
		return schemas.CodeUnsupported
	case strings.HasPrefix(status, "5.7."):
		return schemas.CodeNotAllowed
	}
	return schemas.CodeNoRoute
}

// dsnStatus maps the wire code of a failure to an RFC 3463 status for a
// DSN.
func dsnStatus(code string) string {
	c, _ := schemas.ParseCode(code)
	switch c {
	case schemas.CodeUnknownRecipient:
		return "5.1.1"
	case schemas.CodeTooLarge:
		return "5.3.4"
	case schemas.CodeExpired:
		return "5.4.7"
	case schemas.CodeNoRoute:
		return "5.4.4"
	case schemas.CodeUnsupported:
		return "5.6.1"
	case schemas.CodeConversionFailed:
		return "5.6.3"
	case schemas.CodeNotAllowed, schemas.CodeUnauthorized, schemas.CodeUnknownSender, schemas.CodeQuotaExceeded:
		return "5.7.1"
	case schemas.CodeStrictRequired:
		return "5.3.5"
	}
	return "5.0.0"
}

// enhanced returns the "x.y.z" form of an enhanced code, "" when unset.
func enhanced(e smtp.EnhancedCode) string {
	if e == smtp.EnhancedCodeNotSet || e == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}
