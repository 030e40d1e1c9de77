package broker

import (
	"context"
	"errors"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/schemas"
)

// handleProfile lists, stores and deletes client profiles for the
// administrator (schemas.SubjectBrokerProfile). The request is plain JSON,
// not a MIAP frame: who may publish on the subject is NATS's permission to
// enforce (only the administrator identity), as the brokers are the ones
// allowed to write profiles. Answers never carry a secret
// (schemas.ProfileSummary). A change is logged, announced on
// SubjectProfilesChanged so every broker drops its cache, and handed to
// Config.OnProfilesChanged before the answer.
func (b *Broker) handleProfile(ctx context.Context, req micro.Request) error {
	var q schemas.ProfileRequest
	if err := decodeJSON(req.Data(), &q); err != nil {
		return err
	}
	reply := schemas.ProfileReply{Op: q.Op}
	switch q.Op {
	case schemas.ProfileList:
		ps, err := b.profiles.List(ctx)
		if err != nil {
			return schemas.Errorf(schemas.CodeStoreUnavailable, err, "list profiles")
		}
		reply.Profiles = make([]schemas.ProfileSummary, len(ps))
		for i, p := range ps {
			reply.Profiles[i] = p.Summary()
		}
		return b.respondJSON(req, &reply)
	case schemas.ProfilePut:
		if q.Profile == nil {
			return schemas.Errorf(schemas.CodeMalformed, nil, "put without a profile")
		}
		if err := checkProfile(q.Profile); err != nil {
			return schemas.Errorf(schemas.CodeMalformed, err, "profile")
		}
		if err := b.profiles.Put(ctx, q.Profile); err != nil {
			return schemas.Errorf(schemas.CodeStoreUnavailable, err, "store profile")
		}
		reply.ID = q.Profile.ID
	case schemas.ProfileDelete:
		err := b.profiles.Delete(ctx, q.ID)
		if errors.Is(err, ErrNoClient) {
			return schemas.Errorf(schemas.CodeUnknownRecipient, err, q.ID)
		}
		if err != nil {
			return schemas.Errorf(schemas.CodeStoreUnavailable, err, "delete profile")
		}
		reply.ID = q.ID
	default:
		return schemas.Errorf(schemas.CodeMalformed, nil, "profile op "+q.Op)
	}
	b.log.Info().Str("op", q.Op).Str("id", reply.ID).Msg("profile changed by the administrator")
	if err := b.nc.Publish(schemas.SubjectProfilesChanged, nil); err != nil {
		b.log.Warn().Err(err).Msg("cannot announce the profile change; other brokers see it within their cache age")
	}
	if b.cfg.OnProfilesChanged != nil {
		if err := b.cfg.OnProfilesChanged(ctx); err != nil {
			return schemas.Errorf(schemas.CodeInternal, err, "profile "+reply.ID+" changed in the store, but not saved")
		}
	}
	return b.respondJSON(req, &reply)
}

func (b *Broker) respondJSON(req micro.Request, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return schemas.Errorf(schemas.CodeInternal, err, "encode reply")
	}
	return req.Respond(body)
}
