package web_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/broker"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/internal/tlstest"
	"github.com/uims/uims/schemas"
)

// With Config.TLS the gateway serves the page, the API and Server-Sent
// Events over HTTPS (HTTP/2 when the client offers it) to a client that
// trusts the CA; a client without the CA fails on the certificate and plain
// HTTP gets 400.
func TestHTTPS(t *testing.T) {
	certs := tlstest.New(t)
	f := fabrictest.New(t)
	f.StartBroker(broker.Config{})
	f.PutProfiles(
		&schemas.Profile{ID: "alice", Name: "Alice", Token: "alice-token", Addresses: map[string]string{"web": "alice"}},
		&schemas.Profile{ID: "bob", Name: "Bob", Token: "bob-token", Addresses: map[string]string{"web": "bob"}},
	)
	cert, err := tls.LoadX509KeyPair(certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := web.New(web.Config{Addr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}},
		f.Conn("web"), f.Keyring("web"), f.Log)
	if err != nil {
		t.Fatal(err)
	}
	fabrictest.Start(t, "web gateway", g.Run)
	base := "https://" + g.Addr()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Timeout: 15 * time.Second, Transport: tr}

	resp, err := hc.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.ProtoMajor != 2 {
		t.Fatalf("GET /: %s %s tls=%v", resp.Status, resp.Proto, resp.TLS != nil)
	}

	req, _ := http.NewRequest("GET", base+"/api/v1/events?access_token=bob-token", nil)
	ev, err := hc.Do(req)
	if err != nil || ev.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, ev)
	}
	defer ev.Body.Close()
	var out map[string]any
	fabrictest.Eventually(t, 10*time.Second, "202 Accepted", func() bool {
		req, _ := http.NewRequest("POST", base+"/api/v1/messages", strings.NewReader(`{"to":"bob","text":"over TLS"}`))
		req.Header.Set("Authorization", "Bearer alice-token")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out = nil
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode == http.StatusAccepted
	})
	if out["status"] != "delivered" {
		t.Fatalf("POST answer %v", out)
	}
	got := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(ev.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), out["id"].(string)) {
				got <- true
				return
			}
		}
		got <- false
	}()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("event stream ended without the message")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message event over HTTPS")
	}

	_, err = (&http.Client{Timeout: 5 * time.Second}).Get(base + "/")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("without the CA: want an unknown-authority error, got %v", err)
	}
	plain, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + g.Addr() + "/")
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	plain.Body.Close()
	if plain.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain HTTP: %s", plain.Status)
	}
}
