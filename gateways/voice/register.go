package voice

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// registration is the state of the binding at the registrar.
type registration struct {
	mu      sync.Mutex
	until   time.Time // when the binding runs out; zero when not registered
	last    string    // the last answer or error
	renewed int
}

// Registered reports whether the gateway holds a binding at its
// registrar, and the registrar's last answer.
func (g *Gateway) Registered() (bool, string) {
	g.reg.mu.Lock()
	defer g.reg.mu.Unlock()
	return time.Now().Before(g.reg.until), g.reg.last
}

func (g *Gateway) setRegistration(until time.Time, last string) {
	g.reg.mu.Lock()
	g.reg.until, g.reg.last = until, last
	if !until.IsZero() {
		g.reg.renewed++
	}
	g.reg.mu.Unlock()
}

// hostPort is the host:port a SIP URI is reached at (5060 by default).
func hostPort(uri string) (string, error) {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil || u.Host == "" {
		return "", fmt.Errorf("voice: not a SIP URI: %q", uri)
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(port)), nil
}

// register keeps a binding of User@Domain to our contact at the
// registrar until ctx is done, then removes it (Expires: 0). A refusal or
// an unreachable registrar is logged and tried again after 30 s.
func (g *Gateway) register(ctx context.Context, contact sip.ContactHeader) {
	if g.cfg.Registrar == "" {
		return
	}
	log := g.log.With().Str("registrar", g.cfg.Registrar).Str("user", g.fromUser()).Logger()
	for {
		exp, err := g.registerOnce(ctx, contact, g.cfg.RegisterExpiry)
		next := 30 * time.Second
		if err != nil {
			g.setRegistration(time.Time{}, err.Error())
			log.Warn().Err(err).Msg("SIP registration failed; trying again in 30 s")
		} else {
			g.setRegistration(time.Now().Add(exp), "200 OK")
			log.Info().Dur("expires", exp).Msg("SIP registered")
			next = exp * 3 / 4 // renew before it runs out
		}
		select {
		case <-ctx.Done():
			uctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if _, err := g.registerOnce(uctx, contact, 0); err != nil {
				log.Debug().Err(err).Msg("SIP unregister")
			}
			cancel()
			g.setRegistration(time.Time{}, "unregistered")
			return
		case <-time.After(next):
		}
	}
}

// registerOnce sends one REGISTER (with digest credentials when
// challenged) and returns the expiry the registrar granted.
func (g *Gateway) registerOnce(ctx context.Context, contact sip.ContactHeader, expires time.Duration) (time.Duration, error) {
	var reg sip.Uri
	if err := sip.ParseUri(g.cfg.Registrar, &reg); err != nil {
		return 0, fmt.Errorf("voice: registrar %q: %w", g.cfg.Registrar, err)
	}
	aor := sip.Uri{Scheme: "sip", User: g.fromUser(), Host: g.cfg.Domain}
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: reg.Host, Port: reg.Port})
	from := sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	c := contact.Clone()
	c.Address.User = g.fromUser()
	req.AppendHeader(c)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	req.SetDestination(mustHostPort(g.cfg.Registrar))
	g.mu.Lock()
	client := g.client
	g.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := client.Do(rctx, req)
	if err != nil {
		return 0, fmt.Errorf("voice: REGISTER: %w", err)
	}
	if (res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired) && g.cfg.Password != "" {
		res, err = client.DoDigestAuth(rctx, req, res, sipgo.DigestAuth{Username: g.fromUser(), Password: g.cfg.Password})
		if err != nil {
			return 0, fmt.Errorf("voice: REGISTER with credentials: %w", err)
		}
	}
	if !res.IsSuccess() {
		return 0, fmt.Errorf("voice: REGISTER: %d %s", res.StatusCode, res.Reason)
	}
	granted := expires
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil && n >= 0 {
			granted = time.Duration(n) * time.Second
		}
	}
	if expires > 0 && granted < 10*time.Second {
		granted = 10 * time.Second
	}
	return granted, nil
}

func mustHostPort(uri string) string {
	hp, _ := hostPort(uri)
	return hp
}
