package miap

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"

	"github.com/uims/uims/schemas"
)

// Transfer is an instant message in transit (patent: IM = IMI' + content;
// PROTOCOL.md §6.6): the routed IMI, the content, and the broker's ticket
// that authorises this hop.
type Transfer struct {
	// Ticket is the broker's ticket frame; Ticket.Body is the routed IMI.
	Ticket  *Frame
	Content []byte
	// Sealed: Content was sealed to this party and is now opened (§14).
	Sealed bool
}

// Routed returns the routed IMI bytes.
func (t *Transfer) Routed() []byte { return t.Ticket.Body }

// HdrContentRef names content carried by reference in the object store
// instead of inline (§10).
const HdrContentRef = "Miap-Content-Ref"

// AppendTransfer writes an instant message: the ticket frame into h, and
// returns the body routed IMI ‖ content with Miap-Imi-Len set (§6.6). A
// non-empty ref sends the content by reference: the body then holds the
// routed IMI only, and the object, named ref, was sealed with
// SealContent (Miap-Content-Enc: A256GCM).
func AppendTransfer(h map[string][]string, ticket *Frame, content []byte, ref string) []byte {
	ticket.PutHeader(h)
	h[HdrIMILen] = []string{strconv.Itoa(len(ticket.Body))}
	if ref != "" {
		h[HdrContentRef] = []string{ref}
		h[HdrContentEnc] = []string{EncA256GCM}
		content = nil
	}
	body := make([]byte, 0, len(ticket.Body)+len(content))
	body = append(body, ticket.Body...)
	return append(body, content...)
}

// Fetch returns content stored by reference (§10). A *schemas.Error
// (e.g. STORE_UNAVAILABLE: could not look) keeps its code; any other
// error means the content is not there, a digest mismatch.
type Fetch func(ref string) ([]byte, error)

// OpenTransfer reads and checks an instant message received by party
// (§6.6), in this order: Miap-Imi-Len (MALFORMED, or TOO_LARGE over the
// routed IMI's limit), syntax, ticket (addressee, purpose, expiry, key,
// MAC), then the content's length and SHA-256 against the ticket. Content
// sent by reference is fetched with fetch after the ticket verified; a
// nil fetch takes no content by reference (UNSUPPORTED).
func (e *Engine) OpenTransfer(party string, h map[string][]string, body []byte, fetch Fetch) (*Transfer, error) {
	v := get(h, HdrIMILen)
	n64, ok := parseDecimal(v)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s %q", ErrMalformed, HdrIMILen, v)
	case n64 > MaxRouted:
		// The routed IMI's limit, as at the login (§6.5), where the
		// body is the routed IMI alone.
		return nil, fmt.Errorf("%w: routed IMI of %d bytes, limit %d", ErrTooLarge, n64, MaxRouted)
	case n64 == 0 || n64 > int64(len(body)):
		return nil, fmt.Errorf("%w: %s %d of a %d-byte body", ErrMalformed, HdrIMILen, n64, len(body))
	}
	n := int(n64)
	f, err := ParseHeader(h, body[:n:n])
	if err != nil {
		return nil, err
	}
	if err := e.VerifyTicket(party, f); err != nil {
		return nil, err
	}
	content := body[n:]
	enc := get(h, HdrContentEnc)
	if ref := get(h, HdrContentRef); ref == "" && enc != "" {
		return nil, fmt.Errorf("%w: %s without %s", ErrMalformed, HdrContentEnc, HdrContentRef)
	} else if enc != "" && enc != EncA256GCM {
		return nil, schemas.Errorf(schemas.CodeUnsupported, nil, HdrContentEnc+" "+enc)
	}
	if ref := get(h, HdrContentRef); ref != "" {
		if len(content) != 0 || len(ref) > maxName {
			return nil, fmt.Errorf("%w: content both inline and by reference, or a name over %d bytes", ErrMalformed, maxName)
		}
		if fetch == nil {
			return nil, schemas.Errorf(schemas.CodeUnsupported, nil, "content by reference, and no content store")
		}
		if content, err = fetch(ref); err != nil {
			var se *schemas.Error
			if errors.As(err, &se) {
				// The store could not be read (its code says so, e.g.
				// STORE_UNAVAILABLE): not a digest mismatch.
				return nil, fmt.Errorf("miap: fetch %s: %w", ref, err)
			}
			return nil, fmt.Errorf("%w: fetch %s: %w", ErrDigest, ref, err)
		}
		if enc == EncA256GCM {
			if content, err = OpenContent(f.ID, f.CSHA, content); err != nil {
				return nil, err
			}
		}
	}
	if int64(len(content)) != f.CLen {
		return nil, fmt.Errorf("%w: %d bytes, ticket says %d", ErrDigest, len(content), f.CLen)
	}
	sum := sha256.Sum256(content)
	if !equalMAC(sum[:], f.CSHA) {
		return nil, fmt.Errorf("%w: SHA-256 differs from the ticket's", ErrDigest)
	}
	return &Transfer{Ticket: f, Content: content}, nil
}

// VerifyTicket checks a ticket frame presented to party, at the transfer
// (§6.6) and at the strict-mode login to the destination (§6.5): it must
// name party, and a ticket whose key id is unknown or whose MAC does not
// verify is BAD_TICKET; other failures keep their code (MALFORMED for
// another purpose, TOO_LARGE, CLOCK_SKEW, EXPIRED).
func (e *Engine) VerifyTicket(party string, f *Frame) error {
	if f.Party != party {
		return fmt.Errorf("%w: ticket for %q presented to %q", ErrBadTicket, f.Party, party)
	}
	if err := e.Verify(f, PurposeTicket); err != nil {
		if CodeOf(err) == CodeOf(ErrBadMAC) || CodeOf(err) == CodeOf(ErrUnknownKey) {
			return fmt.Errorf("%w: %w", ErrBadTicket, err)
		}
		return err
	}
	return nil
}

// SessionToken is a destination's stateless, single-transfer session key
// for strict mode (§6.5): a gw-session frame in compact form, bound to the
// transaction's ID and checkable by any instance of the destination.
func (e *Engine) SessionToken(party string, id []byte) ([]byte, error) {
	f := &Frame{Purpose: PurposeGwSession, Party: party, ID: id}
	if err := e.Sign(f); err != nil {
		return nil, err
	}
	return AppendCompact(nil, f), nil
}

// CheckSessionToken checks a token made by SessionToken for party and id.
// Every failure, a missing or unparsable token included, is BAD_SESSION
// (§6.6): the cause is kept in the text only, so that it cannot turn the
// code into MALFORMED, STALE or BAD_MAC.
func (e *Engine) CheckSessionToken(party string, id, token []byte) error {
	if len(token) == 0 {
		return fmt.Errorf("%w: no session token", ErrBadSession)
	}
	f, err := ParseCompact(token)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSession, err)
	}
	if f.Party != party || !EqualID(f.ID, id) {
		return fmt.Errorf("%w: token for another transfer", ErrBadSession)
	}
	if err := e.Verify(f, PurposeGwSession); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSession, err)
	}
	return nil
}
