package miapnats

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Announce publishes a signed heartbeat of a gateway or processor
// instance to the brokers (../PROTOCOL.md §6.12): every broker hears it
// and routes to the party until the announcement's TTL runs out (TTL 0:
// goodbye). eng must hold the key of a.Gateway.
func Announce(nc *nats.Conn, eng *miap.Engine, a *schemas.Announce) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("miapnats: encode announcement: %w", err)
	}
	f := &miap.Frame{Purpose: miap.PurposeAnnounce, Party: a.Gateway, Body: body}
	if err := eng.Sign(f); err != nil {
		return fmt.Errorf("miapnats: sign announcement: %w", err)
	}
	m := nats.NewMsg(schemas.SubjectBrokerAnnounce)
	f.PutHeader(m.Header)
	m.Data = body
	if err := nc.PublishMsg(m); err != nil {
		return fmt.Errorf("miapnats: publish announcement: %w", err)
	}
	return nil
}
