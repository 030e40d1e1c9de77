package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/audit"
	"github.com/uims/uims/internal/natstest"
)

// ReadRange stops at the first batch stored after until, and Read reads
// to the stream's end.
func TestReadRange(t *testing.T) {
	nc := natstest.Connect(t, natstest.Run(t), "reader")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := audit.EnsureStream(ctx, js); err != nil {
		t.Fatal(err)
	}
	var marks []time.Time
	for i := range 3 {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		marks = append(marks, time.Now())
		if _, err := js.Publish(ctx, "uims.audit.b1", []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(since, until time.Time) string {
		var got string
		if err := audit.ReadRange(ctx, js, since, until, func(m audit.Msg) { got += string(m.Data) }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(time.Time{}, marks[1].Add(25*time.Millisecond)); got != "ab" {
		t.Errorf("to just after the second: %q", got)
	}
	if got := read(marks[1].Add(-time.Millisecond), marks[1].Add(25*time.Millisecond)); got != "b" {
		t.Errorf("the second alone: %q", got)
	}
	if got := read(time.Time{}, time.Time{}); got != "abc" {
		t.Errorf("everything: %q", got)
	}
}
