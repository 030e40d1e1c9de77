package bot

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Outgoing is a message the bot sends.
type Outgoing struct {
	// ID is the message id (32 lowercase hex); empty: a new one. Sending
	// the same message again must reuse it: the fabric delivers it once.
	ID string
	// From is the sender's address on the bot's medium, default
	// Config.Address; the client whose profile owns that address is the
	// sender, else an outside sender. Name is a display name.
	From string
	Name string
	// To is a client id or an address: an e-mail address, a phone number,
	// or "medium:address" for any medium ("xmpp:carol@chat.example").
	To      string
	Subject string
	// Text is the content as text/plain; or Type and Content for any other.
	Text      string
	Type      string
	Content   []byte
	InReplyTo string
	Meta      map[string]string
}

// Sent is a message the destination took.
type Sent struct {
	ID string
	Tx string
	// Status is transferred or delivered; held when the brokers hold it
	// (the recipient's quiet hours, PROTOCOL.md §6.16: the kit keeps it and
	// sends it when they end); Dest where the message went, or will go.
	Status string
	Dest   Hop
}

// Send sends a message and returns once the destination took it. A
// temporary failure (no gateway for the recipient yet, a busy fabric) is
// retried with the same message id until ctx is done; other errors return
// at once with their code (Code, PROTOCOL.md §9).
func (b *Bot) Send(ctx context.Context, o Outgoing) (*Sent, error) {
	from := o.From
	if from == "" {
		from = b.cfg.Address
	}
	client, err := b.send.clientOf(ctx, from)
	if err != nil {
		return nil, err
	}
	s := &kit.Submission{MsgID: o.ID, From: schemas.Endpoint{Medium: b.cfg.Medium, Address: from, Client: client, Name: o.Name},
		To: o.To, Subject: o.Subject, Type: o.Type, Content: o.Content, InReplyTo: o.InReplyTo, Meta: o.Meta}
	if s.Type == "" && s.Content == nil {
		s.Type, s.Content = "text/plain; charset=utf-8", []byte(o.Text)
	}
	if s.MsgID == "" {
		s.MsgID = kit.NewMsgID()
	}
	wait := 100 * time.Millisecond
	for {
		res, err := b.kit.Send(ctx, s)
		if err == nil {
			return &Sent{ID: res.MsgID, Tx: res.Tx, Status: res.Status, Dest: res.Dest}, nil
		}
		if !miap.CodeOf(err).Retryable() {
			return nil, err
		}
		b.log.Debug().Err(err).Str("msg_id", s.MsgID).Dur("retry_in", wait).Msg("send: temporary failure")
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// NewMsgID returns a fresh message id, for an Outgoing that may be sent
// again (a retry after a crash must reuse it).
func NewMsgID() string { return kit.NewMsgID() }

// Reply answers m: to its sender (the client, else the address on the
// sender's medium), from the bot address m was sent to, as a reply to it.
func (b *Bot) Reply(ctx context.Context, m *Message, text string) (*Sent, error) {
	to := m.From.Client
	if to == "" {
		to = m.From.Medium + ":" + m.From.Address
	}
	subject := m.Subject
	if subject != "" && !strings.HasPrefix(strings.ToLower(subject), "re:") {
		subject = "Re: " + subject
	}
	return b.Send(ctx, Outgoing{From: m.To, To: to, Subject: subject, Text: text, InReplyTo: m.ID})
}

// sender finds the client that owns a sender address, through the brokers
// (PROTOCOL.md §6.11), and remembers it for a minute: the brokers refuse a
// message whose sender claims a client that does not own the address.
type sender struct {
	kit    *kit.Kit
	medium string

	mu    sync.Mutex
	cache map[string]ownerEntry
}

type ownerEntry struct {
	client string
	until  time.Time
}

const ownerTTL = time.Minute

func (s *sender) clientOf(ctx context.Context, address string) (string, error) {
	now := time.Now()
	s.mu.Lock()
	e, ok := s.cache[address]
	s.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.client, nil
	}
	ci, err := s.kit.Client(ctx, schemas.ClientQuery{Kind: "address", Medium: s.medium, User: address})
	switch {
	case err == nil:
		e = ownerEntry{client: ci.ID}
	case kit.IsCode(err, schemas.CodeUnknownRecipient):
		e = ownerEntry{} // an outside sender
	default:
		return "", err
	}
	e.until = now.Add(ownerTTL)
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]ownerEntry{}
	}
	s.cache[address] = e
	s.mu.Unlock()
	return e.client, nil
}
