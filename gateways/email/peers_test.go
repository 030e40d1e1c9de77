package email

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/peertest"
)

// requirePeer finds a peer program (peertest.Require).
func requirePeer(t *testing.T, name, install string) string {
	t.Helper()
	return peertest.Require(t, name, install)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// swaks runs the swaks SMTP client and returns its transcript and exit code.
func swaks(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin := requirePeer(t, "swaks", "apt-get install swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--timeout", "50"}, args...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("swaks: %v", err)
	}
	return string(out), code
}

// mailpit is a running mailpit (SMTP sink with a REST API).
type mailpit struct {
	t    *testing.T
	SMTP string // host:port
	API  string // http://host:port
}

// startMailpit starts mailpit on free ports with its database in a
// temporary folder; it is stopped when the test ends.
func startMailpit(t *testing.T) *mailpit {
	t.Helper()
	bin := requirePeer(t, "mailpit", "go install github.com/axllent/mailpit@v1.33.1")
	dir := t.TempDir()
	mp := &mailpit{t: t, SMTP: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mp.API = "http://" + httpAddr
	logf, err := os.Create(filepath.Join(dir, "mailpit.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", httpAddr, "--smtp", mp.SMTP, "--database", filepath.Join(dir, "mailpit.db"),
		"--disable-version-check")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(mp.API + "/api/v1/info")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if c, err := net.Dial("tcp", mp.SMTP); err == nil {
					c.Close()
					return mp
				}
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "mailpit.log"))
			t.Fatalf("mailpit did not start: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type mpAddress struct {
	Name    string
	Address string
}

// mpSummary is a message in mailpit's list and search answers.
type mpSummary struct {
	ID          string
	MessageID   string
	From        mpAddress
	To          []mpAddress
	Cc          []mpAddress
	Bcc         []mpAddress
	Subject     string
	Attachments int
}

// mpMessage is mailpit's full view of a message.
type mpMessage struct {
	mpSummary
	ReplyTo     []mpAddress
	Text        string
	HTML        string
	Attachments []struct {
		FileName    string
		ContentType string
		Size        int
	}
}

func (mp *mailpit) getJSON(path string, v any) {
	mp.t.Helper()
	resp, err := http.Get(mp.API + path)
	if err != nil {
		mp.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		mp.t.Fatalf("mailpit %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		mp.t.Fatal(err)
	}
}

// search returns the messages matching a mailpit search query.
func (mp *mailpit) search(query string) []mpSummary {
	var r struct{ Messages []mpSummary }
	mp.getJSON("/api/v1/search?query="+url.QueryEscape(query), &r)
	return r.Messages
}

// waitFor waits until a message matching query arrives and returns it.
func (mp *mailpit) waitFor(query string, timeout time.Duration) *mpMessage {
	mp.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if ms := mp.search(query); len(ms) > 0 {
			var m mpMessage
			mp.getJSON("/api/v1/message/"+ms[0].ID, &m)
			return &m
		}
		if time.Now().After(deadline) {
			mp.t.Fatalf("no message matching %q in mailpit after %v", query, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (mp *mailpit) raw(id string) string {
	mp.t.Helper()
	resp, err := http.Get(mp.API + "/api/v1/message/" + id + "/raw")
	if err != nil {
		mp.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}

// postfix is a private postfix instance (its own configuration, queue and
// port), so it runs beside any system postfix and other tests.
type postfix struct {
	t    *testing.T
	dir  string
	Addr string
}

// startPostfix starts postfix relaying the domains to gateway (host:port).
func startPostfix(t *testing.T, gateway string, domains ...string) *postfix {
	t.Helper()
	bin := requirePeer(t, "postfix", "apt-get install postfix (debconf: postfix/main_mailer_type select Local only)")
	if os.Geteuid() != 0 {
		msg := "PEER UNUSABLE: postfix needs root to start its master daemon"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "uims-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	pf := &postfix{t: t, dir: dir, Addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	for _, d := range []string{"conf", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	host, port, _ := net.SplitHostPort(gateway)
	var transport []string
	for _, d := range domains {
		transport = append(transport, fmt.Sprintf("%s=smtp:[%s]:%s", d, host, port))
	}
	mainCF := strings.Join([]string{
		"compatibility_level = 3.6",
		"queue_directory = " + filepath.Join(dir, "queue"),
		"data_directory = " + filepath.Join(dir, "data"),
		"mail_owner = postfix",
		"setgid_group = postdrop",
		"myhostname = mx.upstream.test",
		"mydomain = upstream.test",
		"mydestination =",
		"inet_interfaces = 127.0.0.1",
		"inet_protocols = ipv4",
		"mynetworks = 127.0.0.0/8",
		"relay_domains = " + strings.Join(domains, ", "),
		"transport_maps = inline:{ " + strings.Join(transport, ", ") + " }",
		"smtputf8_enable = no",
		"maillog_file = " + filepath.Join(dir, "maillog"),
		"maillog_file_prefixes = " + dir,
		"alias_maps =",
		"alias_database =",
		"local_recipient_maps =",
		"biff = no",
		"smtp_tls_security_level = none",
		"smtpd_tls_security_level = none",
		"queue_run_delay = 1s",
		"minimal_backoff_time = 1s",
		"maximal_backoff_time = 2s",
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "conf", "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(master), "\n") {
		f := strings.Fields(l)
		if len(f) >= 7 && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			if f[0] == "smtp" && f[1] == "inet" {
				f[0] = pf.Addr
			}
			f[4] = "n" // no chroot: the queue is in a temporary folder
			l = strings.Join(f, " ")
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "master.cf"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "conf")
	if out, err := exec.Command(bin, "-c", conf, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("postfix start: %v %s %s", err, out, log)
	}
	t.Cleanup(func() {
		exec.Command(bin, "-c", conf, "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("postfix log:\n%s", log)
		}
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("tcp", pf.Addr); err == nil {
			c.Close()
			return pf
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Fatalf("postfix does not listen on %s: %s", pf.Addr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (pf *postfix) log() string {
	b, _ := os.ReadFile(filepath.Join(pf.dir, "maillog"))
	return string(b)
}
