package tracing_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/internal/natstest"
	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/schemas"
)

// Events go out in batches: a full batch at once, the rest after the delay
// or on Flush, each with its age; nothing is lost or reordered.
func TestPublisherBatches(t *testing.T) {
	ns := natstest.Run(t)
	nc := natstest.Connect(t, ns, "pub")
	sub := natstest.Connect(t, ns, "sub")
	ch := make(chan *nats.Msg, 64)
	s, err := sub.ChanSubscribe(schemas.TraceBatchSubject("web"), ch)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	sub.Flush()

	p := tracing.New(nc, "web", 200*time.Millisecond, 4)
	for i := range 6 {
		p.Publish(&schemas.TraceEvent{Step: "deliver", MsgID: string(rune('a' + i)), Party: "web", Result: "ok"})
	}
	read := func(within time.Duration) ([]schemas.TraceEvent, []time.Duration) {
		t.Helper()
		select {
		case m := <-ch:
			var evs []schemas.TraceEvent
			ages, err := tracing.Decode(m.Data, &evs)
			if err != nil || len(ages) != len(evs) {
				t.Fatalf("batch %q: %v, %d ages", m.Data, err, len(ages))
			}
			return evs, ages
		case <-time.After(within):
			t.Fatal("no batch")
			return nil, nil
		}
	}
	evs, _ := read(2 * time.Second) // full: at once, not after the delay
	if len(evs) != 4 || evs[0].MsgID != "a" || evs[3].MsgID != "d" {
		t.Fatalf("first batch: %+v", evs)
	}
	evs, ages := read(2 * time.Second) // the rest after the delay
	if len(evs) != 2 || evs[0].MsgID != "e" || evs[1].MsgID != "f" {
		t.Fatalf("second batch: %+v", evs)
	}
	// the publisher's own clock: the partial batch waited its delay
	if ages[0] < 150*time.Millisecond || ages[0] > 5*time.Second {
		t.Fatalf("age of an event that waited the delay: %v", ages[0])
	}
	p.Publish(&schemas.TraceEvent{Step: "ack"})
	p.Flush()
	if evs, _ := read(2 * time.Second); len(evs) != 1 || evs[0].Step != "ack" {
		t.Fatalf("flushed batch: %+v", evs)
	}
	var none *tracing.Publisher // tracing off
	none.Publish(&schemas.TraceEvent{Step: "x"})
	none.Flush()
}

func TestDecodeRefusesGarbage(t *testing.T) {
	var evs []schemas.TraceEvent
	for _, in := range []string{``, `[`, `{"age_us":[1],"events":{}}`, `{"age_us":"x"}`} {
		if _, err := tracing.Decode([]byte(in), &evs); err == nil {
			t.Errorf("Decode(%q) accepted", in)
		}
	}
}

// Decode takes any bytes without panicking; what it accepts is a batch
// whose events re-encode to what it read.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"age_us":[12,0],"events":[{"step":"imi","party":"web","by":"b1","result":"routed","at":1},{"step":"ack","party":"web","by":"b1","result":"applied","at":2,"id_match":true}]}`))
	f.Add([]byte(`{"age_us":[],"events":[]}`))
	f.Add([]byte(`{"age_us":[-5],"events":[{"step":"\u00e9\n"}]}`))
	f.Add([]byte(`[{"step":"x"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var evs []schemas.TraceEvent
		if _, err := tracing.Decode(data, &evs); err != nil {
			return
		}
		for i := range evs {
			var again schemas.TraceEvent
			if err := json.Unmarshal(evs[i].AppendJSON(nil), &again); err != nil || again != evs[i] {
				t.Fatalf("event %d %+v re-encodes to %+v (%v)", i, evs[i], again, err)
			}
		}
	})
}
