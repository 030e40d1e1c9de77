package sms_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/dlr"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
	"github.com/uims/uims/schemas"
)

// nodeSMSC is the npm smpp 0.5.1 SMS centre of testdata/nodesmsc.
type nodeSMSC struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	port   int
	events chan map[string]any
}

func startNodeSMSC(t *testing.T, port int) *nodeSMSC {
	t.Helper()
	_, err := exec.LookPath("node")
	needPeer(t, "node (Node.js)", err == nil)
	dir, _ := filepath.Abs("testdata/nodesmsc")
	_, err = os.Stat(filepath.Join(dir, "node_modules", "smpp", "package.json"))
	needPeer(t, "npm smpp@0.5.1 in "+dir+" (npm ci there)", err == nil)
	n := &nodeSMSC{t: t, events: make(chan map[string]any, 1000)}
	n.cmd = exec.Command("node", "smsc.js")
	n.cmd.Dir = dir
	n.cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port), "PASSWORD=secret")
	n.cmd.Stderr = os.Stderr
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if n.stdin, err = n.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				n.events <- ev
			}
		}
		close(n.events)
	}()
	ev := n.next("listening", 10*time.Second)
	n.port = int(ev["port"].(float64))
	return n
}

func (n *nodeSMSC) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

func (n *nodeSMSC) stop() {
	if n.cmd.ProcessState == nil {
		n.stdin.Close()
		n.cmd.Process.Kill()
		n.cmd.Wait()
	}
}

// next returns the next event of a kind, skipping others.
func (n *nodeSMSC) next(kind string, timeout time.Duration) map[string]any {
	n.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-n.events:
			if !ok {
				n.t.Fatalf("node SMSC exited while waiting for %s", kind)
			}
			if ev["event"] == kind {
				return ev
			}
		case <-deadline:
			n.t.Fatalf("no %s event from the node SMSC", kind)
		}
	}
}

func (n *nodeSMSC) command(c map[string]any) {
	b, _ := json.Marshal(c)
	n.stdin.Write(append(b, '\n'))
}

// submits collects the submit_sm events of one message (count parts).
func (n *nodeSMSC) submits(count int) []map[string]any {
	n.t.Helper()
	var out []map[string]any
	for range count {
		out = append(out, n.next("submit_sm", 10*time.Second))
	}
	return out
}

// Our SMPP client against a third-party SMS centre (npm smpp 0.5.1): long
// GSM 7-bit and UCS-2 texts arrive as UDH-concatenated submit_sm with the
// right data_coding; the centre's receipts, written with its ids in
// another base, become delivered or failed at the sender; mobile-originated
// messages reach the inbox; the link rebinds after the centre restarts.
func TestSMSCWithNodeSMPP(t *testing.T) {
	smsc := startNodeSMSC(t, 0)
	e := newEnv(t, sms.Config{SMSC: sms.SMSCConfig{Addr: smsc.addr(), SystemID: "uims", Password: "secret",
		Rate: 20, Burst: 1, ReconnectDelay: 200 * time.Millisecond}})
	if ev := smsc.next("bound", 10*time.Second); ev["system_id"] != "uims" {
		t.Fatalf("bound %v", ev)
	}

	t.Run("long GSM 7-bit", func(t *testing.T) {
		text := strings.Repeat("GSM text with the extension table: €, [x], {y}, ~z^ and |pipe|. ", 6) // 402 septets
		start := time.Now()
		res := e.sendFrom(t, "alice", "+44 7700 900123", text)
		took := time.Since(start)
		parts := smsc.submits(3)
		var got strings.Builder
		for i, p := range parts {
			if p["data_coding"].(float64) != 0 || p["esm_class"].(float64) != 0x40 || p["registered_delivery"].(float64) != 1 ||
				p["destination_addr"] != "447700900123" || p["source_addr"] != "15550100" || p["source_addr_ton"].(float64) != 1 {
				t.Fatalf("part %d: %v", i+1, p)
			}
			udh := p["udh"].([]any)
			if len(udh) != 1 || !strings.HasPrefix(udh[0].(string), "0003") || !strings.HasSuffix(udh[0].(string), fmt.Sprintf("03%02x", i+1)) {
				t.Fatalf("part %d udh %v", i+1, udh)
			}
			got.WriteString(p["text"].(string))
		}
		if got.String() != text {
			t.Fatalf("text at the centre:\n%q\nwant\n%q", got.String(), text)
		}
		if took < 80*time.Millisecond { // 3 parts at 20/s with a bucket of 1
			t.Fatalf("3 parts submitted in %v: no rate limit", took)
		}
		if res.Status != schemas.StatusTransferred {
			t.Fatalf("status %s", res.Status)
		}
		fabrictest.Eventually(t, 10*time.Second, "delivered at alice", func() bool {
			return slices.Contains(e.test.Statuses(res.MsgID), schemas.StatusDelivered)
		})
	})

	t.Run("long UCS-2 with emoji", func(t *testing.T) {
		text := strings.Repeat("Привет 👋🏽 мир! ", 10) // 170 UTF-16 units
		res := e.sendFrom(t, "dave", "+447700900123", text)
		parts := smsc.submits(3)
		var got strings.Builder
		for i, p := range parts {
			if p["data_coding"].(float64) != 8 || p["esm_class"].(float64) != 0x40 || p["source_addr"] != "UIMS" || p["source_addr_ton"].(float64) != 5 {
				t.Fatalf("part %d: %v", i+1, p)
			}
			got.WriteString(p["text"].(string))
		}
		if got.String() != text {
			t.Fatalf("text at the centre:\n%q\nwant\n%q", got.String(), text)
		}
		fabrictest.Eventually(t, 10*time.Second, "delivered at dave", func() bool {
			return slices.Contains(e.test.Statuses(res.MsgID), schemas.StatusDelivered)
		})
	})

	t.Run("undeliverable", func(t *testing.T) {
		res := e.sendFrom(t, "dave", "+447700900199", "to a dead phone")
		smsc.submits(1)
		fabrictest.Eventually(t, 10*time.Second, "failed at dave", func() bool {
			return slices.Contains(e.test.Statuses(res.MsgID), schemas.StatusFailed)
		})
		if n := e.test.Note(res.MsgID); !strings.Contains(n.Reason, "UNDELIV") {
			t.Fatalf("reason %q", n.Reason)
		}
	})

	t.Run("mobile originated", func(t *testing.T) {
		before := e.web.Len()
		smsc.command(map[string]any{"cmd": "mo", "source": "447700900123", "dest": "15550101", "text": "Reply to Bob (€5)"})
		if ev := smsc.next("mo_resp", 10*time.Second); ev["status"].(float64) != 0 {
			t.Fatalf("mo status %v", ev["status"])
		}
		if e.web.Len() != before+1 {
			t.Fatalf("%d messages in bob's inbox, want %d", e.web.Len(), before+1)
		}
		var d *kit.Delivery
		for _, id := range e.webIDs() {
			if x := e.web.Get(id); string(x.Content) == "Reply to Bob (€5)" {
				d = x
			} else {
				t.Logf("in the inbox: %q", x.Content)
			}
		}
		if d == nil || d.Routed.IMI.From.Address != "+447700900123" || d.Routed.IMI.From.Medium != "sms" || d.Routed.Recipient != "bob" {
			t.Fatalf("mobile-originated message %+v", d)
		}
		// To a number no client owns: refused permanently, not looped back.
		smsc.command(map[string]any{"cmd": "mo", "source": "447700900123", "dest": "15559999", "text": "nobody"})
		if ev := smsc.next("mo_resp", 10*time.Second); ev["status"].(float64) != 0x65 {
			t.Fatalf("mo to nobody: status %v, want ESME_RX_P_APPN", ev["status"])
		}
	})

	t.Run("application to a phone number, receipt back to the application", func(t *testing.T) {
		c := dialESME(t, e.addr())
		c.mustBind(pdu.CmdBindTransceiver, "alice", "alice-pw")
		r := c.submit(textMsg("15550100", "447700900125", "From an application through the centre", 1))
		if r.Status != pdu.ESME_ROK {
			t.Fatalf("submit_sm: %s", r.Status)
		}
		if p := smsc.submits(1)[0]; p["text"] != "From an application through the centre" || p["source_addr"] != "15550100" {
			t.Fatalf("at the centre: %v", p)
		}
		rc := c.next(10 * time.Second)
		if id, _ := rc.TLVs.ReceiptedMessageID(); id != r.MessageID || rc.ESMClass != pdu.ESMClassDeliveryReceipt {
			t.Fatalf("receipt %q for %q", rc.ShortMessage, r.MessageID)
		}
		if rec, _ := dlr.Parse(string(rc.ShortMessage)); rec.Stat != dlr.StatDelivered {
			t.Fatalf("receipt %q", rc.ShortMessage)
		}
	})

	t.Run("rebind after the centre restarts", func(t *testing.T) {
		port := smsc.port
		smsc.stop()
		smsc2 := startNodeSMSC(t, port)
		smsc2.next("bound", 15*time.Second)
		res := e.sendFrom(t, "dave", "+447700900124", "after the restart")
		if p := smsc2.submits(1)[0]; p["text"] != "after the restart" {
			t.Fatalf("submit %v", p)
		}
		fabrictest.Eventually(t, 10*time.Second, "delivered at dave", func() bool {
			return slices.Contains(e.test.Statuses(res.MsgID), schemas.StatusDelivered)
		})
	})
}
