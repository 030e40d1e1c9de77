package sms_test

import (
	"testing"
	"time"

	"github.com/uims/uims/gateways/sms"
	"github.com/uims/uims/gateways/sms/pdu"
	"github.com/uims/uims/internal/fabrictest"
)

// BenchmarkSubmitToInbox measures submit_sm → web inbox with a window of
// 10 outstanding requests on one session: each submit_sm_resp comes only
// after the inbox took the message.
func BenchmarkSubmitToInbox(b *testing.B) {
	e := newEnv(b, sms.Config{Window: 10})
	c := dialESME(b, e.addr())
	c.mustBind(pdu.CmdBindTransmitter, "alice", "alice-pw")
	fabrictest.Eventually(b, 10*time.Second, "the fabric serving", func() bool {
		return c.submit(textMsg("15550100", "bob", "warm up", 0)).Status == pdu.ESME_ROK
	})
	slots := make(chan struct{}, 10) // outstanding requests
	window := make(chan chan pdu.PDU, 10)
	done := make(chan struct{})
	failed := map[pdu.Status]int{}
	go func() {
		for ch := range window {
			if st := c.wait(ch).Hdr().Status; st != pdu.ESME_ROK {
				failed[st]++
			}
			<-slots
		}
		close(done)
	}()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		slots <- struct{}{}
		window <- c.start(&pdu.SubmitSM{MessageFields: textMsg("15550100", "15550101", "benchmark message", 0)})
	}
	close(window)
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
	if len(failed) > 0 {
		b.Fatalf("failed submissions: %v", failed)
	}
}
