package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/internal/fabrictest"
)

// uims usage against uims run (its NATS identities and permissions): the
// brokers publish the records and count them; the command-line party reads
// any client's figures; without a client, every client's.
func TestUsageAgainstRun(t *testing.T) {
	data := tempData(t)
	a := runFabric(t, data)
	t.Setenv("UIMS_NATS_URL", a.NATS)
	fabrictest.Eventually(t, 15*time.Second, "a route to bob", func() bool {
		out, err := capture(t, cmdSend, "--from", "alice", "--to", "bob", "--wait", "5s", "warm up")
		return err == nil && strings.Contains(out, "final: delivered")
	})
	for range 2 { // 7 + 2 × 5 bytes
		mustRun(t, cmdSend, "--from", "alice", "--to", "bob", "--wait", "5s", "hello")
	}
	row := regexp.MustCompile(`(?m)^\s*alice\s+\d{4}-\d\d-\d\d\s+cli\s+3\s+0\s+0\s+17\s+0$`)
	var out string
	fabrictest.Eventually(t, 15*time.Second, "alice's three messages in uims usage", func() bool {
		out = mustRun(t, cmdUsage, "alice", "bob")
		return row.MatchString(out)
	})
	if !regexp.MustCompile(`(?m)^\s*bob\s+\d{4}-\d\d-\d\d\s+web\s+0\s+0\s+3\s+0\s+17$`).MatchString(out) ||
		!strings.Contains(out, "alice: no daily quota") {
		t.Errorf("uims usage alice bob:\n%s", out)
	}
	out = mustRun(t, cmdUsage, "--days", "3")
	if !row.MatchString(out) || strings.Count(out, "bob ") < 3 {
		t.Errorf("uims usage --days 3:\n%s", out)
	}
	if _, err := capture(t, cmdUsage, "nobody"); err == nil || !strings.Contains(err.Error(), "UNKNOWN_RECIPIENT") {
		t.Errorf("uims usage nobody: %v", err)
	}
}
