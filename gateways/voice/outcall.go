package voice

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/rs/zerolog"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/schemas"
)

// Profile options (schemas.Profile.Options) of a voice recipient; the
// gateway's Config gives the defaults.
const (
	// OptRetries is how many times a call that is busy, not answered,
	// declined or hung up before the end of the message is tried again.
	OptRetries = "voice.retries"
	// OptRetryInterval is the wait between tries ("2m").
	OptRetryInterval = "voice.retry_interval"
	// OptRing is how long the phone rings before the call is given up
	// ("30s").
	OptRing = "voice.ring"
)

// Bounds of the profile options.
const (
	maxRetries       = 10
	minRetryInterval = 5 * time.Second
	maxRetryInterval = 6 * time.Hour
	minRing, maxRing = 5 * time.Second, 3 * time.Minute
)

// eventPT is the telephone-event payload type we offer (RFC 4733; any
// dynamic type, 101 by custom).
const eventPT = 101

// policy reads the recipient's options, each within its bounds (out of
// bounds or unreadable: the gateway's default).
func (g *Gateway) policy(opts map[string]string) (retries int, interval, ring time.Duration) {
	retries, interval, ring = g.cfg.Retries, g.cfg.RetryInterval, g.cfg.RingTimeout
	if n, err := strconv.Atoi(opts[OptRetries]); err == nil && n >= 0 && n <= maxRetries {
		retries = n
	}
	if d, err := time.ParseDuration(opts[OptRetryInterval]); err == nil && d >= minRetryInterval && d <= maxRetryInterval {
		interval = d
	}
	if d, err := time.ParseDuration(opts[OptRing]); err == nil && d >= minRing && d <= maxRing {
		ring = d
	}
	return retries, interval, ring
}

// target is the SIP URI to call for a voice address: a SIP URI as it is
// (through Proxy when one is set), an E.164 number at Proxy. A mailbox
// address of our own Domain names no phone unless a proxy knows where the
// client's phone registered.
func (g *Gateway) target(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	low := strings.ToLower(addr)
	switch {
	case strings.HasPrefix(low, "sip:") || strings.HasPrefix(low, "sips:"):
		var u sip.Uri
		if err := sip.ParseUri(addr, &u); err != nil || u.Host == "" {
			return "", schemas.Errorf(schemas.CodeUnknownRecipient, err, "not a SIP URI: "+addr)
		}
		if strings.EqualFold(u.Scheme, "sips") {
			return "", schemas.Errorf(schemas.CodeUnsupported, nil, "sips: URIs need SIP over TLS, which the voice gateway does not speak: "+addr)
		}
		if strings.EqualFold(u.Host, g.cfg.Domain) && u.Port == 0 && g.cfg.Proxy == "" {
			return "", schemas.Errorf(schemas.CodeUnreachable, nil, addr+" is a mailbox of this gateway, not a phone: set a SIP proxy (UIMS_SIP_PROXY) that knows where the client registered, or give the client its phone's URI")
		}
		return u.Addr(), nil
	case isNumber(addr):
		if g.cfg.Proxy == "" {
			return "", schemas.Errorf(schemas.CodeUnreachable, nil, "no SIP trunk to call numbers: set UIMS_SIP_PROXY")
		}
		var p sip.Uri
		if err := sip.ParseUri(g.cfg.Proxy, &p); err != nil {
			return "", schemas.Errorf(schemas.CodeUnreachable, err, "the SIP proxy "+g.cfg.Proxy)
		}
		return "sip:" + addr + "@" + p.Host, nil
	}
	return "", schemas.Errorf(schemas.CodeUnknownRecipient, nil, "not a SIP URI or an E.164 number: "+addr)
}

// isNumber reports whether s is an E.164 number: + and 2 to 15 digits.
func isNumber(s string) bool {
	d, ok := strings.CutPrefix(s, "+")
	return ok && len(d) >= 2 && len(d) <= 15 && strings.Trim(d, "0123456789") == ""
}

// Deliver takes a message to speak in a call: the audio and the call's
// record are stored, the call is placed in the background and the
// message is transferred; delivered (answered and played), read (2
// pressed) or failed (with the SIP reason, after the profile's retries)
// follow through kit.Ack.
func (g *Gateway) Deliver(ctx context.Context, d *kit.Delivery) (string, error) {
	if mt, _, _ := strings.Cut(d.Type, ";"); !strings.EqualFold(strings.TrimSpace(mt), ContentType) {
		return "", schemas.Errorf(schemas.CodeUnsupported, nil, "the voice gateway plays audio/wav only, not "+d.Type)
	}
	target, err := g.target(d.Routed.Dest.Address)
	if err != nil {
		return "", err
	}
	rec, err := g.store.getOut(ctx, d.Ref.MsgID)
	if err != nil {
		return "", schemas.Errorf(schemas.CodeStoreUnavailable, err, "")
	}
	if rec != nil {
		return schemas.StatusTransferred, nil // a retry of the transfer: the call is under way
	}
	samples, err := DecodeWAV(d.Content, 0)
	switch {
	case err != nil:
		return "", schemas.Errorf(schemas.CodeMalformed, err, err.Error())
	case len(samples) < Rate/10:
		return "", schemas.Errorf(schemas.CodeMalformed, nil, "the audio lasts less than 0.1 s")
	case len(samples) > int(g.cfg.MaxPlay.Seconds()*Rate):
		return "", schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("the audio lasts %s, more than the %s a call plays",
			(time.Duration(len(samples))*time.Second/Rate).Round(time.Second), g.cfg.MaxPlay))
	}
	retries, interval, ring := g.policy(d.Routed.Options)
	rec = &outRecord{Ref: d.Ref, Target: target, Address: d.Routed.Dest.Address, Intro: intro(d.Routed),
		Retries: retries, Interval: interval.Milliseconds(), Ring: ring.Milliseconds(), Deadline: d.Routed.Deadline}
	if err := g.store.putAudio(ctx, d.Ref.MsgID, EncodeWAV(samples, Rate)); err != nil {
		return "", schemas.Errorf(schemas.CodeStoreUnavailable, err, "")
	}
	if err := g.store.putOut(ctx, rec); err != nil {
		return "", schemas.Errorf(schemas.CodeStoreUnavailable, err, "")
	}
	g.follow(rec)
	return schemas.StatusTransferred, nil
}

// intro is what the call says before the message.
func intro(r *schemas.RoutedIMI) string {
	from := r.Sender
	if from == "" {
		from = r.IMI.From.Address
	}
	s := "A message from " + from + "."
	if r.IMI.Subject != "" {
		s += " " + r.IMI.Subject + "."
	}
	return s
}

// Held tells the brokers whether the gateway holds a message (kit.Holder):
// a call being placed or retried.
func (g *Gateway) Held(ctx context.Context, q *schemas.HeldQuery) (*kit.AckRef, error) {
	rec, err := g.store.getOut(ctx, q.MsgID)
	if err != nil || rec == nil {
		return nil, err
	}
	return &rec.Ref, nil
}

// resume follows the calls a previous run left without an outcome.
func (g *Gateway) resume(ctx context.Context) {
	recs, err := g.store.pending(ctx)
	if err != nil {
		g.log.Warn().Err(err).Msg("calls out left by the last run not resumed")
		return
	}
	for _, r := range recs {
		g.log.Info().Str("msg_id", r.Ref.MsgID).Int("attempts", r.Attempts).Msg("call out resumed")
		g.follow(r)
	}
}

// follow places a call until its outcome, in the background; it stops
// with the gateway (the record stays, and the next run resumes it).
func (g *Gateway) follow(rec *outRecord) {
	g.mu.Lock()
	ctx := g.runCtx
	g.mu.Unlock()
	if ctx == nil {
		return
	}
	g.mu.Lock()
	if g.following[rec.Ref.MsgID] {
		g.mu.Unlock()
		return
	}
	g.following[rec.Ref.MsgID] = true
	g.mu.Unlock()
	g.calls.Add(1)
	go func() {
		defer g.calls.Done()
		defer func() {
			g.mu.Lock()
			delete(g.following, rec.Ref.MsgID)
			g.mu.Unlock()
		}()
		g.attempts(ctx, rec)
	}()
}

// callResult is how one call ended.
type callResult struct {
	played, read bool
	status       int    // the SIP final status of a failed INVITE; 0 for none
	reason       string // what happened, for the sender
	permanent    bool   // no retry helps
	code         schemas.Code
}

func (g *Gateway) attempts(ctx context.Context, rec *outRecord) {
	log := g.log.With().Str("msg_id", rec.Ref.MsgID).Str("target", rec.Target).Logger()
	for {
		if wait := time.Until(time.UnixMilli(rec.NextAt)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if rec.Deadline > 0 && time.Now().UnixMilli() >= rec.Deadline {
			// the brokers told the sender it failed at the deadline (a
			// gateway down until after it, resuming): no call now
			g.drop(rec, log)
			return
		}
		// a call slot, shared with the mailbox; waiting for one is no attempt
		select {
		case g.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var delivered sync.WaitGroup
		res := g.attempt(ctx, rec, log, func() {
			// answered and played: delivered at once, while the prompt plays
			if rec.Delivered {
				return
			}
			rec.Delivered = true
			delivered.Go(func() {
				actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				g.ack(actx, rec, schemas.StatusDelivered, "", "", log)
			})
		})
		<-g.slots
		delivered.Wait()
		if ctx.Err() != nil && !res.played {
			return // stopped mid-call: the next run tries again
		}
		rec.Attempts++
		rec.Last = res.reason
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		switch {
		case res.read:
			g.finish(actx, rec, schemas.StatusRead, "", "", log)
		case res.played:
			g.finish(actx, rec, schemas.StatusDelivered, "", "", log)
		case res.permanent || rec.Attempts > rec.Retries ||
			(rec.Deadline > 0 && time.Now().Add(time.Duration(rec.Interval)*time.Millisecond).UnixMilli() > rec.Deadline):
			reason := res.reason
			if rec.Attempts > 1 {
				reason = fmt.Sprintf("%s (%d calls)", reason, rec.Attempts)
			}
			g.finish(actx, rec, schemas.StatusFailed, res.code.String(), reason, log)
		default:
			rec.NextAt = time.Now().Add(time.Duration(rec.Interval) * time.Millisecond).UnixMilli()
			if err := g.store.putOut(actx, rec); err != nil {
				log.Warn().Err(err).Msg("call record not saved")
			}
			log.Info().Str("last", res.reason).Int("attempts", rec.Attempts).Time("next", time.UnixMilli(rec.NextAt)).Msg("call out: trying again later")
			cancel()
			continue
		}
		cancel()
		return
	}
}

func (g *Gateway) ack(ctx context.Context, rec *outRecord, status, code, reason string, log zerolog.Logger) {
	if err := g.kit.Ack(ctx, rec.Ref, status, code, reason); err != nil {
		log.Error().Err(err).Str("status", status).Msg("call outcome not acknowledged")
	}
}

// finish acknowledges the outcome (delivered was already) and forgets the audio.
func (g *Gateway) finish(ctx context.Context, rec *outRecord, status, code, reason string, log zerolog.Logger) {
	if status != schemas.StatusDelivered {
		g.ack(ctx, rec, status, code, reason, log)
	}
	rec.Outcome = status
	if err := g.store.putOut(ctx, rec); err != nil {
		log.Warn().Err(err).Msg("call record not saved")
	}
	if err := g.store.dropAudio(ctx, rec.Ref.MsgID); err != nil {
		log.Debug().Err(err).Msg("audio not deleted (it expires)")
	}
	g.stats.add(&g.stats.CallsOut)
	log.Info().Str("outcome", status).Str("code", code).Str("reason", reason).Int("attempts", rec.Attempts).Msg("call out ended")
}

// drop forgets a call past the brokers' deadline, without an
// acknowledgement: the brokers settled it as failed (EXPIRED).
func (g *Gateway) drop(rec *outRecord, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec.Outcome = "expired"
	if err := g.store.putOut(ctx, rec); err != nil {
		log.Warn().Err(err).Msg("call record not saved")
	}
	if err := g.store.dropAudio(ctx, rec.Ref.MsgID); err != nil {
		log.Debug().Err(err).Msg("audio not deleted (it expires)")
	}
	log.Warn().Int("attempts", rec.Attempts).Msg("call out past the brokers' deadline: not placed (the sender was told it failed)")
}

// attempt places one call: INVITE, ringing until rec.Ring, then the
// intro, the message and the prompt.
func (g *Gateway) attempt(ctx context.Context, rec *outRecord, log zerolog.Logger, played func()) callResult {
	wavb, err := g.store.audio(ctx, rec.Ref.MsgID)
	if err != nil {
		return callResult{reason: "the audio to play is lost: " + err.Error(), permanent: true, code: schemas.CodeInternal}
	}
	msg, err := DecodeWAV(wavb, 0)
	if err != nil {
		return callResult{reason: err.Error(), permanent: true, code: schemas.CodeInternal}
	}
	conn, err := g.ports.open(g.rtpIP)
	if err != nil {
		return callResult{reason: "no RTP port free", code: schemas.CodeBusy}
	}
	defer g.ports.release(conn)

	var to sip.Uri
	if err := sip.ParseUri(rec.Target, &to); err != nil {
		return callResult{reason: "not a SIP URI: " + rec.Target, permanent: true, code: schemas.CodeUnknownRecipient}
	}
	req := sip.NewRequest(sip.INVITE, to)
	from := sip.FromHeader{DisplayName: "UIMS", Address: sip.Uri{Scheme: "sip", User: g.fromUser(), Host: g.cfg.Domain}}
	from.Params = sip.NewParams()
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", Allowed))
	offer := BuildSDP(udpAddrPort(conn), Choice{PT: PTPCMU, Codec: "pcmu", Event: eventPT}, true, time.Now().Unix())
	req.SetBody(offer)
	if g.proxyAddr != "" {
		req.SetDestination(g.proxyAddr)
	}
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	dc, err := g.outDialogs.WriteInvite(ictx, req)
	if err != nil {
		return callResult{reason: "INVITE not sent: " + err.Error(), code: schemas.CodeUnreachable}
	}
	defer dc.Close()
	wctx, wcancel := context.WithTimeout(ictx, time.Duration(rec.Ring)*time.Millisecond)
	err = dc.WaitAnswer(wctx, sipgo.AnswerOptions{Username: g.cfg.User, Password: g.cfg.Password})
	ringErr := wctx.Err()
	wcancel()
	if err != nil {
		return g.failure(err, ringErr, time.Duration(rec.Ring)*time.Millisecond)
	}
	if err := dc.Ack(ctx); err != nil {
		log.Warn().Err(err).Msg("ACK")
	}
	bye := func() {
		if dc.Context().Err() != nil {
			return
		}
		bctx, c := context.WithTimeout(context.Background(), 3*time.Second)
		if err := dc.Bye(bctx); err != nil {
			log.Debug().Err(err).Msg("BYE")
		}
		c()
	}
	answer, err := ParseSDP(dc.InviteResponse.Body())
	var choice Choice
	if err == nil {
		choice, err = answer.Negotiate()
	}
	if err != nil {
		bye()
		return callResult{reason: "answered without G.711: " + err.Error(), permanent: true, code: schemas.CodeUnsupported}
	}
	log = log.With().Str("call_id", callID(req)).Str("codec", choice.Codec).Logger()
	log.Info().Msg("call out answered")

	// the whole call is bounded: the message twice, the prompts, a minute
	callCtx, end := context.WithTimeout(dc.Context(), 2*time.Duration(len(msg))*time.Second/Rate+time.Minute+g.cfg.PromptWait*3)
	defer end()
	go func() {
		select {
		case <-ctx.Done():
			end()
		case <-callCtx.Done():
		}
	}()
	st := newStream(conn, answer.Addr, choice, &g.stats)
	digits := make(chan string, 16)
	rctx, stop := context.WithCancel(callCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.receive(rctx, func([]int16) {}, func(d string) {
			select {
			case digits <- d:
			default:
			}
		})
	}()
	defer func() { stop(); <-done }()
	res := g.converse(callCtx, st, msg, g.say(rec.Intro), digits, played)
	if dc.Context().Err() != nil && !res.played {
		res.reason = "hung up before the end of the message"
		res.code = schemas.CodeRejected
	}
	bye()
	log.Info().Bool("played", res.played).Bool("read", res.read).Msg("call out ended")
	return res
}

// converse plays the intro and the message, then asks for 1 (again) or
// 2 (confirm), twice at most.
func (g *Gateway) converse(ctx context.Context, st *stream, msg, introSpeech []int16, digits <-chan string, played func()) callResult {
	play := func(s []int16) bool { return st.play(ctx, s) == nil }
	if !play(introSpeech) || !play(msg) {
		return callResult{reason: "hung up before the end of the message", code: schemas.CodeRejected}
	}
	played()
	prompt := g.say(g.cfg.Prompt)
	for asked := 0; asked < 2; {
		// a digit pressed during the message counts
		var d string
		select {
		case d = <-digits:
		default:
			if !play(prompt) {
				return callResult{played: true}
			}
			asked++
			select {
			case d = <-digits:
			case <-time.After(g.cfg.PromptWait):
			case <-ctx.Done():
				return callResult{played: true}
			}
		}
		switch d {
		case "1":
			if !play(msg) {
				return callResult{played: true}
			}
			asked = 0
		case "2":
			play(g.say("Thank you. Goodbye."))
			return callResult{played: true, read: true}
		}
	}
	play(g.say("Goodbye."))
	return callResult{played: true}
}

// failure maps a failed INVITE to a result: the SIP status and reason,
// or no answer in time.
func (g *Gateway) failure(err, ringErr error, ring time.Duration) callResult {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		st := int(de.Res.StatusCode)
		r := callResult{status: st, reason: fmt.Sprintf("SIP %d %s", st, de.Res.Reason), code: schemas.CodeRejected}
		switch {
		case st == 404 || st == 604 || st == 484 || st == 410:
			r.permanent, r.code = true, schemas.CodeUnknownRecipient
		case st == 488 || st == 606 || st == 415:
			r.permanent, r.code = true, schemas.CodeUnsupported
		case st == 401 || st == 407 || st == 403:
			r.permanent, r.code = true, schemas.CodeNotAllowed
		case st >= 500 && st != 600 && st != 603:
			r.code = schemas.CodeUnreachable
		}
		return r
	}
	if ringErr != nil {
		return callResult{status: 408, reason: fmt.Sprintf("no answer in %s", ring), code: schemas.CodeRejected}
	}
	return callResult{reason: "call failed: " + err.Error(), code: schemas.CodeUnreachable}
}

// fromUser is the user part of our From in calls out.
func (g *Gateway) fromUser() string {
	if g.cfg.User != "" {
		return g.cfg.User
	}
	return g.cfg.Gateway
}

// say speaks text with espeak-ng (cached), or a short tone without it.
func (g *Gateway) say(text string) []int16 {
	g.speechMu.Lock()
	defer g.speechMu.Unlock()
	if s, ok := g.speech[text]; ok {
		return s
	}
	s, err := speak(g.cfg.Espeak, text, 20*time.Second)
	if err != nil {
		g.log.Warn().Err(err).Msg("text to speech failed: a tone instead")
		s = tone(440, 300*time.Millisecond, 6000)
	}
	if len(g.speech) > 256 {
		clear(g.speech)
	}
	g.speech[text] = s
	return s
}
