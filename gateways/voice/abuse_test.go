package voice_test

import (
	"context"
	"math"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/uims/uims/gateways/voice"
	"github.com/uims/uims/internal/fabrictest"
)

// call is a call into a mailbox from sipgo's UAC, with its own RTP socket.
type call struct {
	sess *sipgo.DialogClientSession
	rtp  *net.UDPConn
	gw   netip.AddrPort // the gateway's RTP address from its answer
}

func dial(t *testing.T, c *sipgo.Client, addr, user string) (*call, *sip.Response) {
	t.Helper()
	rtp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rtp.Close() })
	req := invite(addr, user, "udp")
	req.SetBody(voice.BuildSDP(rtp.LocalAddr().(*net.UDPAddr).AddrPort(), voice.Choice{PT: voice.PTPCMU, Codec: "pcmu", Event: 101}, true, 1))
	dc := sipgo.NewDialogClientCache(c, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: 5999}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sess, err := dc.WriteInvite(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		var de *sipgo.ErrDialogResponse
		if ok := asDialogErr(err, &de); ok {
			return nil, de.Res
		}
		t.Fatalf("INVITE: %v", err)
	}
	if err := sess.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := voice.ParseSDP(sess.InviteResponse.Body())
	if err != nil {
		t.Fatal(err)
	}
	return &call{sess: sess, rtp: rtp, gw: m.Addr}, sess.InviteResponse
}

func asDialogErr(err error, de **sipgo.ErrDialogResponse) bool {
	e, ok := err.(*sipgo.ErrDialogResponse)
	if ok {
		*de = e
	}
	return ok
}

// send sends d of a 440 Hz tone in 20 ms PCMU packets of payload type
// pt, paced in real time, until d or ctx ends.
func (c *call) send(ctx context.Context, pt uint8, d time.Duration) {
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	var seq uint16
	var ts uint32
	for i := 0; time.Duration(i)*20*time.Millisecond < d; i++ {
		payload := make([]byte, 160)
		for j := range payload {
			v := int16(8000 * math.Sin(2*math.Pi*440*float64(int(ts)+j)/voice.Rate))
			payload[j] = ulaw(v)
		}
		p := voice.Packet{PayloadType: pt, Seq: seq, Timestamp: ts, SSRC: 7, Payload: payload}
		c.rtp.WriteToUDPAddrPort(p.Marshal(), c.gw)
		seq++
		ts += 160
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
	}
}

// ulaw is G.711 µ-law (ITU-T G.711 §A.2's segment encoding), written
// here from the standard so that the test does not use the gateway's.
func ulaw(v int16) byte {
	const bias, clip = 0x84, 32635
	s := int(v)
	sign := 0
	if s < 0 {
		s, sign = -s, 0x80
	}
	s = min(s, clip) + bias
	exp := 7
	for mask := 0x4000; s&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (s >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// An INVITE flood beyond MaxCalls is answered 486 at once, without a
// broker lookup; RTP of a payload type that was not negotiated is counted
// and dropped while the call records the rest; a call longer than
// MaxMessage (the stand-in for a caller who talks for an hour) is ended
// by the gateway's BYE and its recording cut at MaxMessage. Through all
// of it the gateway still answers OPTIONS and takes the next call.
func TestAbuse(t *testing.T) {
	s := start(t, voice.Config{MaxCalls: 2, MaxMessage: 4 * time.Second, Silence: 10 * time.Second, Espeak: "no-such-espeak"})
	c := client(t)

	// the long call, sending tone with a wrong payload type interleaved
	long, _ := dial(t, c, s.gw.Addr(), "bob")
	if long == nil {
		t.Fatal("bob's mailbox refused the call")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { long.send(ctx, voice.PTPCMU, 20*time.Second) })
	wg.Go(func() { long.send(ctx, 96, 3*time.Second) }) // 150 packets of a type never offered

	// the flood: the second slot is free, so one INVITE in the burst may
	// get a call; every other one is 486 with Retry-After
	var mu sync.Mutex
	codes := map[int]int{}
	var flood sync.WaitGroup
	for range 100 {
		flood.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			res, err := c.Do(ctx, invite(s.gw.Addr(), "bob", "udp"))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				codes[-1]++
				return
			}
			codes[int(res.StatusCode)]++
		})
	}
	flood.Wait()
	t.Logf("flood: %v", codes)
	if codes[486] < 98 || codes[-1] > 0 {
		t.Fatalf("flood answers %v: want 486 for all but at most two", codes)
	}

	// the gateway ends the long call at MaxMessage (its BYE goes to a
	// Contact nobody serves here) and hands the recording over while the
	// caller still talks
	fabrictest.Eventually(t, 14*time.Second, "the cut recording in bob's inbox", func() bool { return s.bob.Len() >= 1 })
	if ctx.Err() != nil {
		t.Fatal("the caller stopped first")
	}
	cancel()
	wg.Wait()
	rec, err := voice.DecodeWAV(s.bob.All()[0].Content, 0)
	if err != nil {
		t.Fatal(err)
	}
	if secs := float64(len(rec)) / voice.Rate; secs < 2 || secs > 4.01 {
		t.Fatalf("recording of %.2f s; MaxMessage is 4 s", secs)
	}
	if _, _, wrongPT, _ := s.gw.Snapshot(); wrongPT < 100 {
		t.Fatalf("%d packets of the wrong payload type counted, 150 sent", wrongPT)
	}

	// still serving: OPTIONS, and a call
	o := do(t, c, sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: long.sess.InviteRequest.Recipient.Port}))
	if o.StatusCode != 200 {
		t.Fatalf("OPTIONS after: %d", o.StatusCode)
	}
	// the next call gets in once the long call's slot is free (the one
	// the flood got holds the other until its silence ends)
	var next *call
	var res *sip.Response
	fabrictest.Eventually(t, 10*time.Second, "the next call answered", func() bool {
		next, res = dial(t, c, s.gw.Addr(), "bob")
		return next != nil
	})
	if res.StatusCode != 200 {
		t.Fatalf("the next call: %d", res.StatusCode)
	}
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer bcancel()
	next.sess.Bye(bctx)
}

// With one RTP port, a second call gets 503 with Retry-After.
func TestNoRTPPort(t *testing.T) {
	port := freeUDPPort(t) &^ 1
	s := start(t, voice.Config{RTPPortMin: port, RTPPortMax: port + 1, Espeak: "no-such-espeak"})
	c := client(t)
	first, _ := dial(t, c, s.gw.Addr(), "bob")
	if first == nil {
		t.Fatal("first call refused")
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		first.sess.Bye(ctx)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Do(ctx, invite(s.gw.Addr(), "bob", "udp"))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != sip.StatusServiceUnavailable || res.GetHeader("Retry-After") == nil {
		t.Fatalf("second call: %d %s", res.StatusCode, res.Reason)
	}
}
