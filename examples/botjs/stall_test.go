package botjs_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/uims/uims/schemas"
)

// TestStalledBotNonDelivery: a bot that stops acknowledging costs its
// senders a non-delivery report, never a silent loss. The brokers' deadline
// is short here; once it passed, the sweeper asks the bot whether it holds
// the message (PROTOCOL.md §6.14), hears nothing, fails the message with
// EXPIRED and notifies the originator (§6.9): alice's page gets a failed
// status with a code and a reason.
func TestStalledBotNonDelivery(t *testing.T) {
	node := requireNode(t)
	f := startFabric(t, fabricConfig{deadline: 2 * time.Second, grace: 300 * time.Millisecond})
	// the latest a failure may come: the deadline, the grace, a sweep
	// interval (500 ms), the held query's timeout (1 s), and slack
	within := f.broker.Deadline + f.broker.Grace + 1500*time.Millisecond + 2*time.Second
	alice := openEvents(t, f)

	// failed waits for alice's non-delivery report of msgID, sent at start.
	failed := func(t *testing.T, msgID string, start time.Time) {
		t.Helper()
		ev := alice.waitStatus(t, within, msgID, schemas.StatusFailed)
		took := time.Since(start)
		if ev.Code != schemas.CodeExpired.String() || ev.Reason == "" || ev.Sender != "alice" {
			t.Errorf("alice's failed status: %+v", ev)
		}
		if took > within {
			t.Errorf("the failure came after %v, the deadline allows %v", took, within)
		}
		t.Logf("non-delivery report after %v (deadline %v): %s: %s", took.Round(time.Millisecond), f.broker.Deadline, ev.Code, ev.Reason)
		if code, st := call(t, "GET", f.web+"/api/v1/messages/"+msgID, "alice-token", ""); code != 200 || st["state"] != schemas.StatusFailed {
			t.Errorf("status of alice's message: %d %v", code, st)
		}
	}

	t.Run("hang", func(t *testing.T) {
		// the bot takes the transfer and never answers: alice's send fails
		// for now (the web gateway's transfer times out at the deadline),
		// then her page hears that the message failed
		b := startBot(t, node, f.bundle, "BOT_STALL=hang")
		defer b.stop()
		start := time.Now()
		code, out, id := post(t, f, "are you there?")
		if code == http.StatusAccepted {
			t.Fatalf("POST to a bot that never answers: %d %v", code, out)
		}
		t.Logf("alice's send answered %d %v", code, out)
		b.waitLog(t, time.Second, "im "+id+": stalled (BOT_STALL=hang)")
		failed(t, id, start)
		b.waitLog(t, time.Second, "held "+id+": stalled")
	})

	t.Run("noack", func(t *testing.T) {
		// the bot delivers and answers transferred (it will report the
		// outcome later), then never acknowledges: alice is told
		// transferred, then failed
		b := startBot(t, node, f.bundle, "BOT_STALL=noack")
		defer b.stop()
		start := time.Now()
		code, out, id := post(t, f, "will you answer?")
		if code != http.StatusAccepted || out["status"] != schemas.StatusTransferred {
			t.Fatalf("POST to a bot that never acknowledges: %d %v", code, out)
		}
		b.waitLog(t, time.Second, "im "+id+": stalled (BOT_STALL=noack)")
		failed(t, id, start)
	})

	t.Run("SIGKILL", func(t *testing.T) {
		// the bot dies with the message in flight: no answer, no
		// acknowledgement, no one to ask at the deadline
		b := startBot(t, node, f.bundle, "BOT_STALL=hang")
		key, id := idempotent(t)
		start := time.Now()
		type answer struct {
			code int
			out  map[string]any
			err  error
		}
		posted := make(chan answer, 1)
		go func() {
			code, out, err := send(f.web, key, "goodbye?", 15*time.Second)
			posted <- answer{code, out, err}
		}()
		b.waitLog(t, 15*time.Second, "im "+id+": stalled (BOT_STALL=hang)")
		b.kill()
		a := <-posted
		if a.err != nil || a.code == http.StatusAccepted {
			t.Fatalf("POST to a bot killed in flight: %d %v %v", a.code, a.out, a.err)
		}
		t.Logf("alice's send answered %d %v", a.code, a.out)
		failed(t, id, start)
	})
}
