package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/uims/uims/gateways/kit/kittest"
	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// webProbe reads the recipient's inbox over the HTTP API.
type webProbe struct{ url string }

func (p webProbe) Received(t testing.TB, id string) (int, string) {
	req, _ := http.NewRequest("GET", p.url+"/api/v1/inbox", nil)
	req.Header.Set("Authorization", "Bearer rcpt-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Messages []web.Message }
	json.NewDecoder(resp.Body).Decode(&out)
	n, text := 0, ""
	for _, m := range out.Messages {
		if m.ID == id {
			n++
			text = m.Text
			if len(m.Attachments) == 1 && m.Attachments[0].Name == "message.txt" {
				text = p.whole(t, id) // the inbox shows the first MiB; the whole is attached
			}
		}
	}
	return n, text
}

func (p webProbe) whole(t testing.TB, id string) string {
	req, _ := http.NewRequest("GET", p.url+"/api/v1/messages/"+id+"/content", nil)
	req.Header.Set("Authorization", "Bearer rcpt-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The web gateway passes the kit's conformance suite.
func TestWebConformance(t *testing.T) {
	kittest.Run(t, kittest.Adapter{Gateway: "web", Medium: "web", Address: "suite-rcpt",
		// Immediate: the message is in the inbox stream when Deliver
		// returns. LargeContent: a text/plain message over 1 MiB shows its
		// first MiB and has the whole attached (message.txt). No Refusal
		// or Retry: nothing on the recipient's side refuses a message; the
		// inbox takes it.
		Features: kittest.Features{Immediate: true, LargeContent: true},
		Profile:  func(p *schemas.Profile) { p.Token = "rcpt-token" }, // to read the inbox
		Start: func(t *testing.T, f *fabrictest.Fabric) kittest.Probe {
			g, err := web.New(web.Config{Addr: "127.0.0.1:0"}, f.Conn("web"), f.Keyring("web"), f.Log)
			if err != nil {
				t.Fatal(err)
			}
			fabrictest.Start(t, "web gateway", g.Run)
			return webProbe{url: "http://" + g.Addr()}
		}})
}
