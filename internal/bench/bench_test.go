package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/internal/redistest"
)

// TestFlowsDeliver is a functional smoke test, not a benchmark: every flow
// carries 20 messages on a fabric in this process, and the real flow's
// messages are in the recipient's web inbox. Nothing here is timed.
func TestFlowsDeliver(t *testing.T) {
	redistest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := &Config{DataDir: t.TempDir()}
	cfg.setDefaults()
	f, err := startFabric(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	// Authentication is on, as in `uims run`: every part connected as its party.
	if nc, err := nats.Connect(f.natsURL); err == nil {
		nc.Close()
		t.Fatal("the embedded server took an anonymous connection")
	}
	for _, strict := range []bool{false, true} {
		if err := f.useWeb(ctx, strict); err != nil {
			t.Fatal(err)
		}
		f.purge(ctx)
		content := Content(10 << 10)
		kf := &kitFlow{k: f.web.Kit(), sent: &f.kitSent}
		for i := range 20 {
			if err := kf.send(ctx, content); err != nil {
				t.Fatalf("strict=%v: message %d: %v", strict, i, err)
			}
		}
		var stored uint64
		for i := range web.DefaultInboxShards {
			st, err := f.js.Stream(ctx, web.InboxStreamName(i))
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			stored += info.State.Msgs
		}
		if stored != 20 {
			t.Fatalf("strict=%v: %d messages in the inbox, want 20", strict, stored)
		}
	}
	flows := map[string]flow{
		FlowBare:  newBareFlow(f.gw, cfg.Bare),
		FlowSF:    &sfFlow{nc: f.gw, eng: mustEngine(f), instance: "web-test"},
		FlowJS:    &jsFlow{js: f.js},
		FlowRedis: &redisFlow{rdb: f.rdb},
	}
	for name, fl := range flows {
		for i := range 20 {
			if err := fl.send(ctx, Content(1000)); err != nil {
				t.Fatalf("%s: message %d: %v", name, i, err)
			}
		}
	}
	// The broker side's counters saw the real flow's messages.
	st, err := f.side.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Conns[RoleBroker].InMsgs < 40 || st.Conns[RoleSF].InMsgs < 20 || st.Conns[RoleBare].InMsgs < 40 {
		t.Fatalf("broker side counters %+v", st.Conns)
	}
	// One accounting record per message of the real flow, warm-ups
	// included, and none of the reference flows'.
	acct, err := f.checkAccounting(ctx, 0, f.kitSent.Load(), 20*time.Second)
	if err != nil || !acct.Equal || acct.Sent < 40 {
		t.Fatalf("accounting %+v %v", acct, err)
	}
}

// A short load run (uims bench --quick, shortened): 64 senders at a time
// through the real flow, and as many accounting records as messages
// delivered.
func TestLoadRunAccounting(t *testing.T) {
	redistest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := Config{DataDir: t.TempDir(), Flows: []string{FlowKit}, Modes: []string{"fast"}, Sizes: []int{100, 10 << 10}, Senders: []int{1, 64},
		Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, MinMsgs: 50, MaxDuration: 5 * time.Second, Progress: io.Discard}
	rep, err := Run(ctx, cfg, []string{"test"})
	if err != nil {
		t.Fatal(err)
	}
	a := rep.Accounting
	if a == nil || !a.Equal || a.Sent < 200 {
		t.Fatalf("accounting %+v", a)
	}
	t.Logf("%d messages delivered, %d records, %.1f s after the last cell", a.Sent, a.Records, a.Waited)
	if !strings.Contains(rep.Markdown(), "records in UIMS_ACCOUNTING (equal)") {
		t.Errorf("report:\n%s", rep.Markdown())
	}
}

func TestReportAndProfile(t *testing.T) {
	// A profile of some work, read back by the summary.
	path := filepath.Join(t.TempDir(), "cpu.pprof")
	pf, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	pprof.StartCPUProfile(pf)
	deadline := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 100000 {
			x += i * i
		}
	}
	pprof.StopCPUProfile()
	pf.Close()
	top, err := TopOfProfile(path, "test", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Top) == 0 || len(top.Components) == 0 || top.TotalSeconds <= 0 {
		t.Fatalf("summary %+v", top)
	}
	rs := []*Result{
		{Flow: FlowKit, Mode: "fast", Size: 100, Senders: 64, Rate: 9000, P99: 10, BrokerIn: 1000, BrokerOut: 3000, BrokerCPU: 50},
		{Flow: FlowKit, Mode: "fast", Size: 1 << 20, Senders: 64, Rate: 300, BrokerIn: 1001, BrokerOut: 3001, BrokerCPU: 52},
		{Flow: FlowBare, Size: 100, Senders: 64, Rate: 12000},
	}
	ts := Targets(rs)
	if len(ts) != 7 || ts[0].Met == nil || !*ts[0].Met || ts[1].Met == nil || !*ts[1].Met || ts[2].Met != nil {
		t.Fatalf("targets %+v", ts)
	}
	rep := &Report{Machine: machine(), Results: rs, Targets: ts, Profiles: []ProfileTop{*top}}
	if err := rep.WriteFiles(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"100", "100b", "10k", "100KB", "1m"} {
		if _, err := ParseSize(s); err != nil {
			t.Fatal(err)
		}
	}
	_ = x
}
