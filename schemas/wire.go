package schemas

import "strconv"

// Reply headers shared by every UIMS request-reply (PROTOCOL.md §9). The
// first two are the nats micro service error headers (ADR-32).
const (
	HdrServiceError     = "Nats-Service-Error"
	HdrServiceErrorCode = "Nats-Service-Error-Code"
	HdrError            = "Miap-Error"
	HdrServerTime       = "Miap-Server-Time"
	HdrRetryAfterMS     = "Retry-After-Ms"
	// HdrStatus carries the destination's outcome on a transfer reply.
	HdrStatus = "Uims-Status"
	// HdrReason carries a human-readable reason for a delivery failure
	// ("no SMTP relay configured for outside addresses"), informational:
	// it never carries MIAP verification details.
	HdrReason = "Uims-Reason"
)

// ErrorFromHeader returns the error a reply carries, or nil for a success.
func ErrorFromHeader(h map[string][]string) *Error {
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	name, num := get(HdrError), get(HdrServiceErrorCode)
	if name == "" && num == "" {
		return nil
	}
	detail := get(HdrReason)
	if detail == "" {
		detail = get(HdrServiceError)
	}
	if c, ok := ParseCode(name); ok {
		return &Error{Code: c, Detail: detail}
	}
	if n, err := strconv.Atoi(num); err == nil && n > 0 && n < int(codeEnd) {
		return &Error{Code: Code(n), Detail: detail}
	}
	return &Error{Code: CodeInternal, Detail: detail}
}

// ErrorHeader returns the reply headers for an error.
func ErrorHeader(c Code) map[string][]string {
	return map[string][]string{
		HdrError:            {c.String()},
		HdrServiceError:     {c.String() + ": " + c.Text()},
		HdrServiceErrorCode: {strconv.Itoa(int(c))},
	}
}
