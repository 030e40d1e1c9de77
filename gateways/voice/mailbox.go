package voice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/schemas"
)

// onInvite answers a call to a mailbox: limits, the client, the SDP
// offer, then 200 with our answer and the recording (record).
func (g *Gateway) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	var release func()
	select {
	case g.slots <- struct{}{}:
		// released before a final error goes out, so that the caller
		// may call again at once
		release = sync.OnceFunc(func() { <-g.slots })
		defer release()
	default:
		g.stats.add(&g.stats.Busy)
		g.reject(req, tx, sip.StatusBusyHere, "Busy Here", fmt.Sprintf("more than %d calls", g.cfg.MaxCalls), 30*time.Second)
		return
	}
	g.mu.Lock()
	runCtx := g.runCtx
	g.mu.Unlock()
	if runCtx == nil || runCtx.Err() != nil {
		release()
		g.reject(req, tx, sip.StatusServiceUnavailable, "Service Unavailable", "shutting down", 30*time.Second)
		return
	}
	g.calls.Add(1)
	defer g.calls.Done()
	g.respond(tx, sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))

	ctx, cancel := context.WithTimeout(runCtx, 5*time.Second)
	client, err := g.mailbox(ctx, req)
	cancel()
	switch {
	case kit.IsCode(err, schemas.CodeUnknownRecipient):
		release()
		g.reject(req, tx, sip.StatusNotFound, "Not Found", "no mailbox "+req.Recipient.User, 0)
		return
	case err != nil:
		g.log.Warn().Err(err).Msg("mailbox lookup")
		release()
		g.reject(req, tx, sip.StatusServiceUnavailable, "Service Unavailable", "mailbox lookup failed", 30*time.Second)
		return
	}
	offer, err := ParseSDP(req.Body())
	var choice Choice
	if err == nil {
		choice, err = offer.Negotiate()
	}
	if err != nil {
		release()
		g.reject(req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here", err.Error(), 0)
		return
	}
	conn, err := g.ports.open(g.rtpIP)
	if err != nil {
		release()
		g.reject(req, tx, sip.StatusServiceUnavailable, "Service Unavailable", "no RTP port", 30*time.Second)
		return
	}
	defer g.ports.release(conn)
	ds, err := g.dialogs.ReadInvite(req, tx)
	if err != nil {
		g.log.Warn().Err(err).Msg("INVITE")
		release()
		g.reject(req, tx, sip.StatusBadRequest, "Bad Request", err.Error(), 0)
		return
	}
	defer ds.Close()
	answer := BuildSDP(udpAddrPort(conn), choice, false, time.Now().Unix())
	if err := ds.RespondSDP(answer); err != nil {
		g.log.Warn().Err(err).Msg("answer")
		return
	}
	from := callerURI(req)
	log := g.log.With().Str("call_id", callID(req)).Str("from", from).Str("mailbox", client.ID).Str("codec", choice.Codec).Logger()
	log.Info().Msg("mailbox call answered")

	callCtx, end := context.WithTimeout(ds.Context(), g.cfg.MaxMessage+time.Minute)
	defer end()
	go func() { // the gateway stops: end the call
		select {
		case <-runCtx.Done():
			end()
		case <-callCtx.Done():
		}
	}()
	st := newStream(conn, offer.Addr, choice, &g.stats)
	rec, why := g.record(callCtx, st, g.greeting(client))
	if ds.Context().Err() == nil { // we end it: BYE
		bctx, c := context.WithTimeout(context.Background(), 3*time.Second)
		if err := ds.Bye(bctx); err != nil {
			log.Debug().Err(err).Msg("BYE")
		}
		c()
	}
	log.Info().Str("end", why).Dur("length", time.Duration(len(rec))*time.Second/Rate).Msg("mailbox call ended")
	if len(rec) < Rate/2 {
		log.Info().Msg("recording shorter than half a second: no message")
		return
	}
	g.stats.add(&g.stats.Recorded)
	g.handOver(runCtx, client, from, rec, log)
}

// handOver sends the recording as a message from the caller to the
// mailbox's client, retrying temporary errors until SendTimeout.
func (g *Gateway) handOver(runCtx context.Context, client *schemas.ClientInfo, from string, rec []int16, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(runCtx), g.cfg.SendTimeout)
	defer cancel()
	sub := &kit.Submission{MsgID: kit.NewMsgID(), From: schemas.Endpoint{Medium: schemas.MediumVoice, Address: from},
		To: client.ID, Subject: "Voice message from " + from, Type: ContentType, Content: EncodeWAV(rec, Rate)}
	for {
		res, err := g.kit.Send(ctx, sub)
		if err == nil {
			log.Info().Str("msg_id", res.MsgID).Str("status", res.Status).Msg("voice message handed over")
			return
		}
		var se *schemas.Error
		if !errors.As(err, &se) || !se.Code.Retryable() || ctx.Err() != nil {
			log.Error().Err(err).Msg("voice message lost: the fabric refused it")
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// mailbox finds the client whose mailbox the call is for: by the voice
// address the request URI names (sip:user@Domain, then the URI as it
// came, then user as a number), then by the To header's URI (a call a
// proxy forwarded to the mailbox keeps the number first dialled there),
// and last by client id (sip:<client id>@Domain reaches the mailbox of a
// client that has a voice address, wherever its phone is).
func (g *Gateway) mailbox(ctx context.Context, req *sip.Request) (*schemas.ClientInfo, error) {
	uris := []sip.Uri{req.Recipient}
	if to := req.To(); to != nil && to.Address.User != "" && to.Address.User != req.Recipient.User {
		uris = append(uris, to.Address)
	}
	var cands []string
	for _, uri := range uris {
		cands = append(cands, "sip:"+uri.User+"@"+g.cfg.Domain)
		if h := strings.ToLower(uri.Host); h != g.cfg.Domain {
			cands = append(cands, "sip:"+uri.User+"@"+h)
			if uri.Port != 0 {
				cands = append(cands, "sip:"+uri.User+"@"+h+":"+strconv.Itoa(uri.Port))
			}
		}
		if u := strings.TrimPrefix(uri.User, "+"); u != "" && strings.Trim(u, "0123456789") == "" {
			cands = append(cands, "+"+u)
		}
	}
	var err error
	for _, a := range cands {
		var ci *schemas.ClientInfo
		ci, err = g.kit.Client(ctx, schemas.ClientQuery{Kind: schemas.ClientByAddress, Medium: schemas.MediumVoice, User: a})
		if err == nil {
			return ci, nil
		}
		if !kit.IsCode(err, schemas.CodeUnknownRecipient) {
			return nil, err
		}
	}
	for _, uri := range uris {
		if uri.User == "" || strings.HasPrefix(uri.User, "+") {
			continue
		}
		ci, err := g.kit.Client(ctx, schemas.ClientQuery{Kind: schemas.ClientByID, User: uri.User})
		if err == nil && ci.Addresses[schemas.MediumVoice] != "" {
			return ci, nil
		}
		if err != nil && !kit.IsCode(err, schemas.CodeUnknownRecipient) {
			return nil, err
		}
	}
	return nil, err
}

// record plays the greeting, then records until the caller hangs up
// (ctx), Silence or MaxMessage. why says which.
func (g *Gateway) record(ctx context.Context, st *stream, greeting []int16) ([]int16, string) {
	var mu sync.Mutex
	var rec []int16
	recording := false
	lastVoice := time.Now()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.receive(rctx, func(s []int16) {
			mu.Lock()
			defer mu.Unlock()
			if !recording {
				return
			}
			rec = append(rec, s...)
			if loud(s) {
				lastVoice = time.Now()
			}
		}, nil)
	}()
	defer func() { stop(); <-done }()
	if err := st.play(ctx, append(greeting, tone(1000, 400*time.Millisecond, 8000)...)); err != nil {
		return nil, "hang-up during the greeting"
	}
	mu.Lock()
	recording, lastVoice = true, time.Now()
	mu.Unlock()
	started := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			return rec, "hang-up"
		case <-t.C:
		}
		mu.Lock()
		silent := time.Since(lastVoice) >= g.cfg.Silence
		n := len(rec)
		mu.Unlock()
		switch {
		case silent:
			mu.Lock()
			defer mu.Unlock()
			return trimSilence(rec), "silence"
		case n >= int(g.cfg.MaxMessage.Seconds()*Rate) || time.Since(started) >= g.cfg.MaxMessage:
			mu.Lock()
			defer mu.Unlock()
			return rec[:min(len(rec), int(g.cfg.MaxMessage.Seconds()*Rate))], "maximum length"
		}
	}
}

// loud reports whether a frame holds more than line noise (mean absolute
// amplitude above about -40 dBFS).
func loud(s []int16) bool {
	if len(s) == 0 {
		return false
	}
	sum := 0
	for _, v := range s {
		sum += abs16(v)
	}
	return sum/len(s) > 300
}

func abs16(v int16) int {
	if v < 0 {
		return -int(v)
	}
	return int(v)
}

// trimSilence drops the silent tail that ended the recording.
func trimSilence(rec []int16) []int16 {
	end := len(rec)
	for end >= frame && !loud(rec[end-frame:end]) {
		end -= frame
	}
	return rec[:end]
}

// greeting speaks the mailbox's greeting with espeak-ng, or returns a
// short two-tone prompt when it cannot (logged).
func (g *Gateway) greeting(c *schemas.ClientInfo) []int16 {
	name := c.Name
	if name == "" {
		name = c.ID
	}
	text := g.cfg.Greeting
	if strings.Contains(text, "%s") {
		text = fmt.Sprintf(text, name)
	}
	s, err := speak(g.cfg.Espeak, text, 20*time.Second)
	if err != nil {
		g.log.Warn().Err(err).Msg("greeting: text to speech failed, a tone instead")
		return append(tone(440, 300*time.Millisecond, 6000), tone(660, 300*time.Millisecond, 6000)...)
	}
	return s
}

// speak runs espeak-ng and returns its speech at 8 kHz.
func speak(prog, text string, timeout time.Duration) ([]int16, error) {
	path, err := exec.LookPath(prog)
	if err != nil {
		return nil, fmt.Errorf("voice: %w", err)
	}
	dir, err := os.MkdirTemp("", "uims-voice-")
	if err != nil {
		return nil, fmt.Errorf("voice: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "greeting.wav")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if b, err := exec.CommandContext(ctx, path, "-v", "en-us", "-s", "150", "-w", out, "--", text).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("voice: espeak-ng: %w: %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("voice: %w", err)
	}
	return DecodeWAV(b, 60*Rate)
}

func callID(req *sip.Request) string {
	if h := req.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// callerURI is the From header's URI without parameters
// (sip:alice@host).
func callerURI(req *sip.Request) string {
	f := req.From()
	if f == nil {
		return "sip:anonymous@anonymous.invalid"
	}
	u := f.Address
	s := "sip:" + u.User + "@" + u.Host
	if u.User == "" {
		s = "sip:" + u.Host
	}
	return s
}
