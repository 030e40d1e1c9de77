package sms_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// kannelConf is a bearerbox + smsbox configuration binding Kannel as an
// ESME (transceiver) to our SMPP server, with the sendsms HTTP interface,
// delivery reports and an sms-service that forwards messages received
// over SMPP to an HTTP URL (empty reply: no answer SMS).
const kannelConf = `group = core
admin-port = {{admin}}
admin-password = adminpw
status-password = adminpw
smsbox-port = {{smsbox}}
box-allow-ip = "127.0.0.1"
admin-allow-ip = "127.0.0.1"
log-file = "{{dir}}/bearerbox.log"
log-level = 0
access-log = "{{dir}}/access.log"
store-type = file
store-location = "{{dir}}/kannel.store"
dlr-storage = internal
sms-resend-freq = 2

group = smsc
smsc = smpp
smsc-id = uims
host = 127.0.0.1
port = {{smpp}}
transceiver-mode = true
smsc-username = "carol"
smsc-password = "carol-pw"
system-type = ""
enquire-link-interval = 30
reconnect-delay = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {{smsbox}}
sendsms-port = {{sendsms}}
sendsms-interface = 127.0.0.1
log-file = "{{dir}}/smsbox.log"
log-level = 0

group = sendsms-user
username = tester
password = testpw
max-messages = 10
concatenation = true

group = sms-service
keyword = default
get-url = "{{mo}}/mo?from=%p&to=%P&text=%a"
omit-empty = true
max-messages = 0
`

// hit is a request Kannel made to the test's web server: a delivery
// report (/dlr) or a message for the sms-service (/mo).
type hit struct {
	path  string
	query url.Values
}

// kannel is a running Kannel bound to the gateway of e as carol's
// application.
type kannel struct {
	t       *testing.T
	sendsms int
	hits    chan hit
	web     string // base URL of the test's web server
	dir     string
}

// startKannel starts bearerbox (and waits until its SMPP link is online)
// and smsbox, skipping the test loudly when Kannel is missing.
func startKannel(t *testing.T, e *env) *kannel {
	t.Helper()
	for _, bin := range []string{"/usr/sbin/bearerbox", "/usr/sbin/smsbox"} {
		_, err := os.Stat(bin)
		needPeer(t, "Kannel ("+bin+", Debian package kannel)", err == nil)
	}
	k := &kannel{t: t, hits: make(chan hit, 100), dir: t.TempDir()}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.hits <- hit{r.URL.Path, r.URL.Query()}
		w.WriteHeader(http.StatusOK) // empty body: no reply SMS
	}))
	t.Cleanup(web.Close)
	k.web = web.URL

	admin, smsbox := freePort(t), freePort(t)
	k.sendsms = freePort(t)
	_, smppPort, _ := net.SplitHostPort(e.addr())
	conf := strings.NewReplacer("{{admin}}", fmt.Sprint(admin), "{{smsbox}}", fmt.Sprint(smsbox), "{{sendsms}}", fmt.Sprint(k.sendsms),
		"{{smpp}}", smppPort, "{{dir}}", k.dir, "{{mo}}", web.URL).Replace(kannelConf)
	confPath := filepath.Join(k.dir, "kannel.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(bin string) {
		cmd := exec.Command(bin, confPath)
		cmd.Dir = k.dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var once sync.Once
		t.Cleanup(func() {
			once.Do(func() {
				cmd.Process.Kill()
				cmd.Wait()
			})
		})
	}
	start("/usr/sbin/bearerbox")
	status := fmt.Sprintf("http://127.0.0.1:%d/status.txt?password=adminpw", admin)
	ok := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if strings.Contains(get(status), "online") {
			ok = true
			break
		}
	}
	if !ok {
		k.dumpLogs()
		t.Fatalf("Kannel's SMPP link is not online: %s", get(status))
	}
	start("/usr/sbin/smsbox")
	return k
}

func get(u string) string {
	resp, err := http.Get(u)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (k *kannel) dumpLogs() {
	for _, f := range []string{"bearerbox.log", "smsbox.log"} {
		if b, err := os.ReadFile(filepath.Join(k.dir, f)); err == nil {
			s := string(b)
			if len(s) > 6000 {
				s = s[len(s)-6000:]
			}
			k.t.Logf("%s:\n%s", f, s)
		}
	}
}

// send submits a message through Kannel's sendsms interface, retrying
// until smsbox answers that it took it.
func (k *kannel) send(q url.Values) {
	k.t.Helper()
	q.Set("username", "tester")
	q.Set("password", "testpw")
	u := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/sendsms?%s", k.sendsms, q.Encode())
	var answer string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if answer = get(u); strings.Contains(answer, "Accepted") || strings.Contains(answer, "Sent") {
			return
		}
	}
	k.dumpLogs()
	k.t.Fatalf("sendsms: %q", answer)
}

// Kannel (Debian kannel 1.4.5) binds to our SMPP server as carol's
// application: a message submitted through its sendsms HTTP interface
// reaches bob's web inbox, the delivery receipt comes back into Kannel
// (its dlr-url fires with "delivered"), and a message from the fabric to
// carol reaches Kannel's sms-service.
func TestKannelAsESME(t *testing.T) {
	e := newEnv(t, sms.Config{})
	k := startKannel(t, e)
	hits, dumpLogs := k.hits, k.dumpLogs

	// sendsms → our SMPP server → bob's web inbox, with a delivery report.
	dlrURL := k.web + "/dlr?type=%d&smsc_id=%I&to=%p"
	q := url.Values{"from": {"15550102"}, "to": {"15550101"},
		"text": {"Hello Bob, from Kannel [ok]"}, "dlr-mask": {"3"}, "dlr-url": {dlrURL}}
	k.send(q)
	var msgID string
	fabrictest.Eventually(t, 20*time.Second, "Kannel's message in bob's inbox", func() bool {
		for _, id := range e.webIDs() {
			if d := e.web.Get(id); string(d.Content) == "Hello Bob, from Kannel [ok]" {
				msgID = id
				return true
			}
		}
		return false
	})
	d := e.web.Get(msgID)
	if d.Routed.IMI.From.Client != "carol" || d.Routed.IMI.From.Address != "+15550102" || d.Routed.Recipient != "bob" {
		t.Fatalf("from %+v to %s", d.Routed.IMI.From, d.Routed.Recipient)
	}
	select {
	case h := <-hits:
		if h.path != "/dlr" || h.query.Get("type") != "1" {
			dumpLogs()
			t.Fatalf("Kannel reported %s %v, want a delivery report of type 1 (delivered)", h.path, h.query)
		}
	case <-time.After(20 * time.Second):
		dumpLogs()
		t.Fatal("no delivery report from Kannel")
	}

	// A long text: Kannel splits it (UDH), we reassemble it; Kannel
	// reports the whole message delivered once every part's receipt came.
	long := strings.Repeat("A long message from Kannel in several parts. ", 5)
	q.Set("text", long)
	k.send(q)
	fabrictest.Eventually(t, 20*time.Second, "Kannel's long message in bob's inbox", func() bool {
		for _, id := range e.webIDs() {
			if d := e.web.Get(id); string(d.Content) == long {
				msgID = id
				return true
			}
		}
		return false
	})
	if meta := e.web.Get(msgID).Routed.IMI.Meta; meta["sms.total"] != "2" || meta["sms.partial"] != "" {
		t.Fatalf("meta %v", meta)
	}
	select {
	case h := <-hits:
		if h.path != "/dlr" || h.query.Get("type") != "1" {
			dumpLogs()
			t.Fatalf("Kannel reported %s %v for the long message", h.path, h.query)
		}
	case <-time.After(20 * time.Second):
		dumpLogs()
		t.Fatal("no delivery report from Kannel for the long message")
	}
	select {
	case h := <-hits:
		t.Logf("another report: %s %v", h.path, h.query)
	case <-time.After(time.Second):
	}

	// A message from the fabric to carol: deliver_sm to Kannel, which
	// hands it to its sms-service.
	res := e.sendFrom(t, "dave", "carol", "Hello Kannel, from dave")
	select {
	case h := <-hits:
		if h.path != "/mo" || h.query.Get("text") != "Hello Kannel, from dave" || h.query.Get("to") != "+15550102" || h.query.Get("from") != "dave" {
			t.Fatalf("Kannel's sms-service got %s %v", h.path, h.query)
		}
	case <-time.After(20 * time.Second):
		dumpLogs()
		t.Fatal("the message did not reach Kannel's sms-service")
	}
	fabrictest.Eventually(t, 10*time.Second, "delivered at dave", func() bool {
		return slices.Contains(e.test.Statuses(res.MsgID), schemas.StatusDelivered)
	})
}

// Kannel takes our answers by their class (issue 15). With no SMS centre,
// a message to erin, who prefers SMS and is no SMPP application, is
// ESME_RSUBMITFAIL (UNREACHABLE): Kannel gives up at once and reports it
// rejected (DLR type 16), and no receipt follows. A message to hana,
// whose gateway (the test gateway) is down, is ESME_RTHROTTLED (NO_ROUTE):
// Kannel keeps it and submits it again until the gateway is back, then
// the message is delivered and Kannel reports it delivered (type 1).
func TestKannelTemporaryAndPermanent(t *testing.T) {
	e := newEnv(t, sms.Config{})
	e.f.PutProfiles(classifyProfiles...)
	e.f.PutProfiles(&schemas.Profile{ID: "hana", Addresses: map[string]string{"sms": "+15550196", "test": "hana"}, Prefer: []string{"test"}})
	k := startKannel(t, e)
	dlrURL := func(tag string) string { return k.web + "/dlr?tag=" + tag + "&type=%d" }
	report := func(timeout time.Duration) (hit, bool) {
		select {
		case h := <-k.hits:
			return h, true
		case <-time.After(timeout):
			return hit{}, false
		}
	}

	k.send(url.Values{"from": {"15550102"}, "to": {"15550199"}, "text": {"to erin"}, "dlr-mask": {"19"}, "dlr-url": {dlrURL("erin")}})
	h, ok := report(20 * time.Second)
	if !ok || h.path != "/dlr" || h.query.Get("tag") != "erin" || h.query.Get("type") != "16" {
		k.dumpLogs()
		t.Fatalf("Kannel's report for erin: %v %v, want type 16 (rejected by the SMSC)", ok, h)
	}
	if h, ok := report(2500 * time.Millisecond); ok {
		t.Fatalf("a second report after the refusal: %v", h)
	}

	e.testRun.Stop() // hana's only medium: NO_ROUTE from now on
	k.send(url.Values{"from": {"15550102"}, "to": {"15550196"}, "text": {"to hana, later"}, "dlr-mask": {"19"}, "dlr-url": {dlrURL("hana")}})
	if h, ok := report(4 * time.Second); ok {
		k.dumpLogs()
		t.Fatalf("Kannel reported %v while hana's gateway is down; it should keep the message", h)
	}
	if b, _ := os.ReadFile(filepath.Join(k.dir, "bearerbox.log")); !strings.Contains(string(b), "ESME_RTHROTTLED") && !strings.Contains(string(b), "0x00000058") {
		k.dumpLogs()
		t.Fatal("Kannel's log shows no ESME_RTHROTTLED")
	}
	e.f.StartKit(e.test, kit.Config{Gateway: "test", Medium: "test"})
	fabrictest.Eventually(t, 60*time.Second, "Kannel's retry in hana's inbox", func() bool {
		for _, d := range e.test.All() {
			if d.Routed.Recipient == "hana" && string(d.Content) == "to hana, later" {
				return true
			}
		}
		return false
	})
	h, ok = report(20 * time.Second)
	if !ok || h.query.Get("tag") != "hana" || h.query.Get("type") != "1" {
		k.dumpLogs()
		t.Fatalf("Kannel's report for hana: %v %v, want type 1 (delivered)", ok, h)
	}
}
