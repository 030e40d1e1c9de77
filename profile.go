package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/schemas"
)

// profileAdmin is where `uims profile` reads and changes client profiles.
type profileAdmin interface {
	list(ctx context.Context) ([]schemas.ProfileSummary, error)
	put(ctx context.Context, p *schemas.Profile) error
	delete(ctx context.Context, id string) error
}

func cmdProfile(ctx context.Context, args []string) error {
	o := newOpts("profile")
	o.fs.StringVar(&o.natsURL, "nats", env("UIMS_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL of the fabric, whose brokers change the profiles (UIMS_NATS_URL)")
	o.fs.StringVar(&o.data, "data", env("UIMS_DATA_DIR", "uims-data"), "data folder, where the administrator's credentials are: <data>/creds/admin.creds (UIMS_DATA_DIR)")
	o.fs.StringVar(&o.redisURL, "redis", "", "instead of the brokers, this Redis store directly (a store without brokers; uims run does not save such changes)")
	timeout := o.fs.Duration("timeout", 10*time.Second, "how long to wait for a broker's answer")
	rest := o.parse(args)
	usage := errors.New("usage: uims profile list | put FILE | delete ID")
	if len(rest) == 0 {
		return usage
	}
	var admin profileAdmin
	if o.redisURL != "" {
		rdb, err := broker.OpenRedis(o.redisURL)
		if err != nil {
			return err
		}
		defer rdb.Close()
		admin = &storeAdmin{store: broker.NewProfiles(rdb, nil), o: o}
	} else {
		nc, err := o.connect("admin")
		if err != nil {
			return fmt.Errorf("NATS %s: %w", o.natsURL, err)
		}
		defer nc.Close()
		admin = &brokerAdmin{nc: nc, timeout: *timeout}
	}
	switch {
	case rest[0] == "list" && len(rest) == 1:
		ps, err := admin.list(ctx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			var addrs []string
			for m, a := range p.Addresses {
				addrs = append(addrs, m+"="+a)
			}
			sort.Strings(addrs)
			fmt.Fprintf(stdout, "%-12s %-20s %s prefer=%s\n", p.ID, p.Name, strings.Join(addrs, " "), strings.Join(p.Prefer, ","))
		}
		return nil
	case rest[0] == "put" && len(rest) == 2:
		f, err := os.Open(rest[1])
		if err != nil {
			return err
		}
		defer f.Close()
		ps, err := broker.ReadProfiles(f)
		if err != nil {
			return err
		}
		for i, p := range ps {
			if err := admin.put(ctx, p); err != nil {
				return fmt.Errorf("profile %s (%d of %d stored before it): %w", p.ID, i, len(ps), err)
			}
		}
		fmt.Fprintf(stdout, "%d profiles stored\n", len(ps))
		return nil
	case rest[0] == "delete" && len(rest) == 2:
		if err := admin.delete(ctx, rest[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "profile %s deleted\n", rest[1])
		return nil
	}
	return usage
}

// brokerAdmin asks the brokers (schemas.SubjectBrokerProfile), which store
// the change, tell each other and, in `uims run`, save it to the data folder.
type brokerAdmin struct {
	nc      *nats.Conn
	timeout time.Duration
}

func (a *brokerAdmin) do(ctx context.Context, q schemas.ProfileRequest) (*schemas.ProfileReply, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	m, err := a.nc.RequestWithContext(ctx, schemas.SubjectBrokerProfile, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("no broker answers on %s at %s: is uims run or uims broker running?", schemas.SubjectBrokerProfile, a.nc.ConnectedUrlRedacted())
	case errors.Is(err, context.DeadlineExceeded):
		return nil, fmt.Errorf("no answer on %s in %v (only the administrator identity may publish there)", schemas.SubjectBrokerProfile, a.timeout)
	case err != nil:
		return nil, err
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		n, _ := strconv.Atoi(code)
		if schemas.Code(n) == schemas.CodeUnknownRecipient && q.Op == schemas.ProfileDelete {
			return nil, fmt.Errorf("no client %q", q.ID)
		}
		return nil, fmt.Errorf("broker refused: %s", m.Header.Get(micro.ErrorHeader))
	}
	var r schemas.ProfileReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("broker answer: %w", err)
	}
	return &r, nil
}

func (a *brokerAdmin) list(ctx context.Context) ([]schemas.ProfileSummary, error) {
	r, err := a.do(ctx, schemas.ProfileRequest{Op: schemas.ProfileList})
	if err != nil {
		return nil, err
	}
	return r.Profiles, nil
}

func (a *brokerAdmin) put(ctx context.Context, p *schemas.Profile) error {
	_, err := a.do(ctx, schemas.ProfileRequest{Op: schemas.ProfilePut, Profile: p})
	return err
}

func (a *brokerAdmin) delete(ctx context.Context, id string) error {
	_, err := a.do(ctx, schemas.ProfileRequest{Op: schemas.ProfileDelete, ID: id})
	return err
}

// storeAdmin changes a Redis store directly (--redis) and tells the brokers,
// if any, to drop their caches.
type storeAdmin struct {
	store *broker.Profiles
	o     *opts
}

func (a *storeAdmin) notify() {
	if nc, err := a.o.connect("admin"); err == nil {
		nc.Publish(schemas.SubjectProfilesChanged, nil)
		nc.Flush()
		nc.Close()
	}
}

func (a *storeAdmin) list(ctx context.Context) ([]schemas.ProfileSummary, error) {
	ps, err := a.store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]schemas.ProfileSummary, len(ps))
	for i, p := range ps {
		out[i] = p.Summary()
	}
	return out, nil
}

func (a *storeAdmin) put(ctx context.Context, p *schemas.Profile) error {
	if err := a.store.Put(ctx, p); err != nil {
		return err
	}
	a.notify()
	return nil
}

func (a *storeAdmin) delete(ctx context.Context, id string) error {
	if err := a.store.Delete(ctx, id); err != nil {
		if errors.Is(err, broker.ErrNoClient) {
			return fmt.Errorf("no client %q", id)
		}
		return err
	}
	a.notify()
	return nil
}
