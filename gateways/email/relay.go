package email

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/schemas"
)

// settle is how long after queueing the first delivery attempt waits.
const settle = 300 * time.Millisecond

// runOutbound delivers queued mail through the smarthost until ctx is
// done, with bounded concurrency.
func (g *Gateway) runOutbound(ctx context.Context) error {
	cons, err := g.store.js.CreateOrUpdateConsumer(ctx, OutStream, jetstream.ConsumerConfig{
		Durable: "mail-out-" + g.cfg.Gateway, FilterSubject: g.store.outSubject(),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 15 * time.Minute, MaxDeliver: -1,
		MaxAckPending: g.cfg.Workers * 16,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("email: outbound consumer: %w", err)
	}
	sem := make(chan struct{}, g.cfg.Workers)
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			g.handleOut(ctx, msg)
		}()
	}, jetstream.PullMaxMessages(g.cfg.Workers*2))
	if err != nil {
		return fmt.Errorf("email: outbound consumer: %w", err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	wg.Wait()
	return nil
}

// handleOut makes one delivery attempt of a queued mail (RFC 5321
// §4.5.4.1: retry with growing intervals, give up after GiveUp).
func (g *Gateway) handleOut(ctx context.Context, msg jetstream.Msg) {
	if ctx.Err() != nil {
		msg.Nak()
		return
	}
	var job outJob
	if err := json.Unmarshal(msg.Data(), &job); err != nil {
		g.log.Error().Err(err).Msg("undecodable outbound mail dropped")
		msg.Term()
		return
	}
	attempt := 1
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	log := g.log.With().Str("msg_id", job.MsgID).Str("to", job.To).Int("attempt", attempt).Logger()
	if wait := time.Until(time.UnixMilli(job.Queued).Add(settle)); attempt == 1 && job.Ref != nil && wait > 0 {
		// Let the kit's "transferred" acknowledgement, sent once Deliver
		// returned, reach the brokers before our outcome does.
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			msg.Nak()
			return
		}
	}
	raw, err := g.store.raw(ctx, &job)
	if err == nil {
		err = g.relayMail(ctx, &job, raw)
	}
	if err == nil {
		log.Info().Str("relay", g.cfg.Relay).Msg("mail handed to the relay")
		g.finish(ctx, &job, schemas.StatusDelivered, "", "")
		msg.Ack()
		return
	}
	if ctx.Err() != nil {
		msg.Nak()
		return
	}
	var se *smtp.SMTPError
	var te *tempError
	if errors.As(err, &se) && se.Code >= 500 && !errors.As(err, &te) {
		reason := fmt.Sprintf("relay %s refused <%s>: %d %s %s", g.cfg.Relay, job.To, se.Code, enhanced(se.EnhancedCode), se.Message)
		log.Warn().Str("reason", reason).Msg("mail refused by the relay")
		g.finish(ctx, &job, schemas.StatusFailed, ackCode(enhanced(se.EnhancedCode)).String(), oneLine(reason, 1000))
		msg.Ack()
		return
	}
	wait := g.cfg.Retry[min(attempt, len(g.cfg.Retry))-1]
	if time.Since(time.UnixMilli(job.Queued))+wait > g.cfg.GiveUp {
		reason := fmt.Sprintf("gave up after %d attempts over %s; last error: %v", attempt, time.Since(time.UnixMilli(job.Queued)).Round(time.Second), err)
		log.Warn().Str("reason", reason).Msg("mail not delivered")
		g.finish(ctx, &job, schemas.StatusFailed, schemas.CodeExpired.String(), oneLine(reason, 1000))
		msg.Ack()
		return
	}
	log.Info().Err(err).Dur("retry_in", wait).Msg("relay attempt failed; will retry")
	if job.Ref != nil {
		if rec, rerr := g.store.getOut(ctx, job.MsgID); rerr == nil && rec != nil {
			rec.LastError = oneLine(err.Error(), 1000)
			g.store.put(ctx, g.store.key("out", job.MsgID), rec)
		}
	}
	msg.NakWithDelay(wait)
}

// finish reports the outcome of an outbound mail to the brokers (notices
// we originate have no acknowledgement) and drops its stored copy.
func (g *Gateway) finish(ctx context.Context, job *outJob, status, code, reason string) {
	defer g.store.done(ctx, job)
	if job.Ref == nil {
		return
	}
	if err := g.kit.Ack(ctx, *job.Ref, status, code, reason); err != nil {
		g.log.Warn().Err(err).Str("msg_id", job.MsgID).Str("status", status).Msg("acknowledgement refused")
	}
	if rec, err := g.store.getOut(ctx, job.MsgID); err == nil && rec != nil {
		rec.Outcome = status
		if status == schemas.StatusFailed {
			rec.LastError = reason
		}
		g.store.put(ctx, g.store.key("out", job.MsgID), rec)
	}
}

// tempError marks a relay error that must be retried whatever its code
// (our configuration, not the message, is at fault).
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }
func (e *tempError) Unwrap() error { return e.err }

// relayMail runs one SMTP transaction with the smarthost (RFC 5321):
// STARTTLS when offered (RFC 3207), AUTH PLAIN only over TLS or loopback,
// DSN parameters when supported (RFC 3461: ENVID carries our message id).
func (g *Gateway) relayMail(ctx context.Context, job *outJob, raw []byte) error {
	dialer := net.Dialer{Timeout: 30 * time.Second}
	host, _, err := net.SplitHostPort(g.cfg.Relay)
	if err != nil {
		return &tempError{fmt.Errorf("relay address %q: %w", g.cfg.Relay, err)}
	}
	// The transaction stops when ctx is done: the connection in use is
	// closed under the lock.
	var mu sync.Mutex
	var cur net.Conn
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if cur != nil {
			cur.Close()
		}
	})
	defer stop()
	dial := func() (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, "tcp", g.cfg.Relay)
		if err != nil {
			return nil, fmt.Errorf("connect to relay %s: %w", g.cfg.Relay, err)
		}
		mu.Lock()
		cur = conn
		mu.Unlock()
		return conn, nil
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer func() { c.Close() }()
	c.CommandTimeout, c.SubmissionTimeout = 2*time.Minute, 10*time.Minute
	if err := c.Hello(g.cfg.Hostname); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	secure := false
	if ok, _ := c.Extension("STARTTLS"); ok && !g.cfg.RelayNoTLS {
		c.Close()
		if conn, err = dial(); err != nil {
			return err
		}
		tc := &tls.Config{}
		if g.cfg.RelayTLS != nil {
			tc = g.cfg.RelayTLS.Clone()
		}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
		tlsClient, err := smtp.NewClientStartTLS(conn, tc)
		if err != nil {
			return &tempError{fmt.Errorf("STARTTLS with relay: %w", err)}
		}
		c = tlsClient
		c.CommandTimeout, c.SubmissionTimeout = 2*time.Minute, 10*time.Minute
		if err := c.Hello(g.cfg.Hostname); err != nil {
			return fmt.Errorf("EHLO: %w", err)
		}
		secure = true
	}
	if g.cfg.RelayUser != "" {
		if !secure && !isLoopback(conn.RemoteAddr()) {
			return &tempError{fmt.Errorf("relay %s offers no TLS; credentials not sent", g.cfg.Relay)}
		}
		if err := c.Auth(sasl.NewPlainClient("", g.cfg.RelayUser, g.cfg.RelayPassword)); err != nil {
			return &tempError{fmt.Errorf("AUTH with relay: %w", err)}
		}
	}
	opts := &smtp.MailOptions{}
	if ok, _ := c.Extension("DSN"); ok && job.EnvID != "" {
		opts.EnvelopeID, opts.Return = job.EnvID, smtp.DSNReturnHeaders
	}
	if ok, _ := c.Extension("SIZE"); ok {
		opts.Size = int64(len(raw))
	}
	if err := c.Mail(job.From, opts); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := c.Rcpt(job.To, nil); err != nil {
		return fmt.Errorf("RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(raw); err != nil {
		w.Close()
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	c.Quit()
	return nil
}
