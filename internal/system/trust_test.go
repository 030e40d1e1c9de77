package system_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/internal/peertest"
	"github.com/uims/uims/internal/system"
	"github.com/uims/uims/miap/natsauth"
	"github.com/uims/uims/schemas"
)

// violation connects to the running system as party, with the credentials
// uims run wrote, does what try does, and returns the error the server
// reported on the connection (nil if none within a second).
func violation(t *testing.T, a system.Addrs, party string, try func(nc *nats.Conn) error) error {
	t.Helper()
	errs := make(chan error, 4)
	nc, err := nats.Connect(a.NATS, append(natsauth.Options(party, filepath.Join(a.Creds, party+".creds")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := try(nc); err != nil {
		return err
	}
	nc.Flush()
	select {
	case err := <-errs:
		return err
	case <-time.After(time.Second):
		return nil
	}
}

// uims run refuses anonymous connections, and what the issue found an
// outsider or a misbehaving party could do on the fabric is refused as a
// permissions violation, while the parties' own work goes on.
func TestRunRefusesOutsidersAndOverreach(t *testing.T) {
	a := runSystem(t, system.Config{})
	if _, err := nats.Connect(a.NATS, nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connection: %v, want an authorization violation", err)
	}
	for _, f := range []string{"admin", "broker", "web", "ops", "cli"} {
		fi, err := os.Stat(filepath.Join(a.Creds, f+".creds"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("credentials of %s: %v %v, want mode 0600", f, fi, err)
		}
	}
	denied := []struct {
		party, what string
		try         func(nc *nats.Conn) error
	}{
		{"web", "read every message", func(nc *nats.Conn) error { _, err := nc.SubscribeSync("uims.>"); return err }},
		{"email", "read the web gateway's transfers", func(nc *nats.Conn) error { _, err := nc.SubscribeSync("uims.gw.*.im"); return err }},
		{"email", "read the inboxes", func(nc *nats.Conn) error { _, err := nc.SubscribeSync("uims.inbox.>"); return err }},
		{"sms", "read IMIs and client queries", func(nc *nats.Conn) error { _, err := nc.SubscribeSync("uims.broker.>"); return err }},
		{"email", "write into bob's inbox", func(nc *nats.Conn) error { return nc.Publish("uims.inbox.0.bob.forged", []byte(`{"text":"forged"}`)) }},
		{"email", "swallow the web gateway's messages", func(nc *nats.Conn) error {
			_, err := nc.QueueSubscribeSync("uims.gw.web.im", "uims-gw-web")
			return err
		}},
		{"web", "purge an inbox stream", func(nc *nats.Conn) error {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, "UIMS_INBOX_0")
			if err != nil {
				return err
			}
			s.Purge(ctx)
			return nil
		}},
		{"cli", "read the trace events", func(nc *nats.Conn) error { _, err := nc.SubscribeSync("uims.trace.>"); return err }},
		{"web", "forge an accounting record", func(nc *nats.Conn) error {
			return nc.Publish("uims.accounting.web.web", []byte(`{"v":1,"outcome":"delivered"}`))
		}},
		{"cli", "read the accounting records", func(nc *nats.Conn) error { _, err := nc.SubscribeSync("uims.accounting.>"); return err }},
	}
	for _, d := range denied {
		err := violation(t, a, d.party, d.try)
		if err == nil || !strings.Contains(err.Error(), "Permissions Violation") {
			t.Errorf("%s may %s: %v", d.party, d.what, err)
		}
	}
	// the parties' own work still goes on: alice → bob delivered
	code, out := post(t, "http://"+a.HTTP+"/api/v1/messages", "alice-token", `{"to":"bob","text":"still fine"}`)
	if code != 202 || out["status"] != "delivered" {
		t.Fatalf("alice → bob: %d %v", code, out)
	}
	req, _ := http.NewRequest("GET", "http://"+a.HTTP+"/api/v1/inbox", nil)
	req.Header.Set("Authorization", "Bearer bob-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var inbox bytes.Buffer
	inbox.ReadFrom(resp.Body)
	resp.Body.Close()
	if strings.Contains(inbox.String(), "forged") || !strings.Contains(inbox.String(), "still fine") {
		t.Errorf("bob's inbox: %s", inbox.String())
	}
}

// The nats CLI, a client nobody here wrote, watches the fabric with the
// operator's credentials that uims run wrote, and is refused without them;
// what it sees of a message's content is ciphertext.
func TestNATSCLIWithOperatorCredentials(t *testing.T) {
	bin := peertest.Require(t, "nats", "go install github.com/nats-io/natscli/nats@v0.5.0")
	a := runSystem(t, system.Config{})
	ops := filepath.Join(a.Creds, "ops.creds")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sub bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--server", a.NATS, "--creds", ops, "sub", "uims.gw.>", "--count", "1")
	cmd.Stdout, cmd.Stderr = &sub, &sub
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // subscribed
	if code, out := post(t, "http://"+a.HTTP+"/api/v1/messages", "alice-token", `{"to":"bob","text":"watched"}`); code != 202 {
		t.Fatalf("alice → bob: %d %v", code, out)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("nats sub with the operator's credentials: %v\n%s", err, sub.String())
	}
	// the transfer, and sealed (PROTOCOL.md §14): the operator sees the
	// wrap and ciphertext, not the text
	if !strings.Contains(sub.String(), "uims.gw.web.im") || !strings.Contains(sub.String(), "Miap-Seal-Key") ||
		strings.Contains(sub.String(), "watched") {
		t.Errorf("nats sub saw:\n%s", sub.String())
	}

	out, err := exec.CommandContext(ctx, bin, "--server", a.NATS, "--creds", ops, "micro", "ls").CombinedOutput()
	if err != nil || !strings.Contains(string(out), schemas.BrokerService) {
		t.Errorf("nats micro ls: %v\n%s", err, out)
	}

	out, err = exec.CommandContext(ctx, bin, "--server", a.NATS, "sub", "uims.>", "--count", "1").CombinedOutput()
	if err == nil || !strings.Contains(strings.ToLower(string(out)), "authorization violation") {
		t.Errorf("nats sub without credentials: %v\n%s", err, out)
	}
}
