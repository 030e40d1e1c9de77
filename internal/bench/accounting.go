package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/schemas"
)

// Accounting is the check of a run's accounting (docs/ACCOUNTING.md): the
// real flow's messages that the load generator saw delivered, and the
// records of web-to-web messages the brokers added to UIMS_ACCOUNTING
// meanwhile. Every message delivered once makes one final record, so the
// two are equal; more records mean messages delivered after their sender
// gave up on them (counted as errors), fewer lost records.
type Accounting struct {
	Sent    int64  `json:"sent"`
	Records uint64 `json:"records"`
	Equal   bool   `json:"equal"`
	// Waited is how long the records took to catch up after the last cell.
	Waited float64 `json:"waited_s"`
}

// kitSubject is the subject of the real flow's records: web to web.
var kitSubject = schemas.AccountingSubject(schemas.MediumWeb, schemas.MediumWeb)

// accounted returns how many records of web-to-web messages the stream
// holds; 0 before the brokers made it.
func (f *fabric) accounted(ctx context.Context) (uint64, error) {
	st, err := f.js.Stream(ctx, schemas.AccountingStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bench: accounting stream: %w", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(kitSubject))
	if err != nil {
		return 0, fmt.Errorf("bench: accounting stream: %w", err)
	}
	return info.State.Subjects[kitSubject], nil
}

// checkAccounting waits up to wait for the records of the real flow's
// sent messages, counted from base.
func (f *fabric) checkAccounting(ctx context.Context, base uint64, sent int64, wait time.Duration) (*Accounting, error) {
	start := time.Now()
	a := &Accounting{Sent: sent}
	for {
		n, err := f.accounted(ctx)
		if err != nil {
			return nil, err
		}
		a.Records = n - base
		a.Equal = int64(a.Records) == sent
		a.Waited = time.Since(start).Seconds()
		if a.Equal || int64(a.Records) > sent || time.Since(start) > wait {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
