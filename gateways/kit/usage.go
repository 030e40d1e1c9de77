package kit

import (
	"context"

	json "github.com/goccy/go-json"

	"github.com/uims/uims/miap"
	"github.com/uims/uims/schemas"
)

// Usage asks the brokers for a client's usage per medium and day and its
// quota (PROTOCOL.md §6.17): q names the client by the hash of the
// credential it authenticated with, as a ClientQuery does; by id only for
// the operator's command-line party (NOT_ALLOWED otherwise).
func (k *Kit) Usage(ctx context.Context, q schemas.UsageQuery) (*schemas.UsageReply, error) {
	q.V = schemas.Version
	body, _ := json.Marshal(q)
	rf, _, err := k.request(ctx, schemas.SubjectBrokerUsage, &miap.Frame{Purpose: miap.PurposeQuery, Party: k.cfg.Gateway, Body: body}, miap.PurposeQueryReply, nil)
	if err != nil {
		return nil, err
	}
	var u schemas.UsageReply
	if err := json.Unmarshal(rf.Body, &u); err != nil {
		return nil, schemas.Errorf(schemas.CodeMalformed, err, "usage reply")
	}
	return &u, nil
}
