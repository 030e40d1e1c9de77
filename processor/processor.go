// Package processor is the UIMS message processor (patent: message
// processor 7): a nats micro service that converts content on its way from
// the originating to the destination gateway when the broker's route names
// a conversion (../miap/PROTOCOL.md §6.7). It processes the content, not
// the meta information: it reports the converted content's type, length and
// digest to the brokers, which sign the ticket for the next hop.
//
// A conversion is a Converter registered by name in Config.Conversions;
// adding one is a local change: write the Converter, list it.
package processor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	json "github.com/goccy/go-json"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/uims/uims/internal/tracing"
	"github.com/uims/uims/miap"
	"github.com/uims/uims/miap/miapnats"
	"github.com/uims/uims/schemas"
)

// Content is content with its MIME type.
type Content struct {
	Type string
	Data []byte
}

// Converter converts content.
type Converter interface {
	// Convert returns in converted. The output's media type must be one of
	// route.Targets (the processor refuses to forward anything else,
	// CONVERSION_FAILED); a converter that always produces its announced
	// type need not look.
	Convert(ctx context.Context, in Content, route Route) (Content, error)
}

// Route is what a converter knows of the route the content is on.
type Route struct {
	// Options are the recipient's delivery options from the routed IMI
	// (for example a length limit, OptionTextMax).
	Options map[string]string
	// Targets are the media types the content may leave this step as, best
	// first (schemas.Targets): the outputs of the route's later steps from
	// the destination's end, then this step's announced output. Content of
	// a later step's type skips the steps up to it (PROTOCOL.md §6.7).
	Targets []string
	// Sender is the sender as the originating gateway named them (display
	// name and address), and Created when that gateway accepted the
	// message: a fax prints both in its header line.
	Sender  string
	Created time.Time
}

// ConverterFunc adapts a function to Converter.
type ConverterFunc func(ctx context.Context, in Content, route Route) (Content, error)

// Convert calls f.
func (f ConverterFunc) Convert(ctx context.Context, in Content, route Route) (Content, error) {
	return f(ctx, in, route)
}

var _ Converter = ConverterFunc(nil)

// Conversion is one named conversion this processor offers.
type Conversion struct {
	schemas.Conversion
	Converter Converter
}

// Config configures a Processor.
type Config struct {
	// Party is the processor's party id (its K1 key owner); default "proc".
	Party string
	// Instance names this process; default random.
	Instance    string
	Version     string
	Conversions []Conversion
	Strict      bool
	// RequestTimeout bounds requests to the brokers; default 5 s.
	RequestTimeout time.Duration
	// ContentRef is the size from which converted content goes on by
	// reference (PROTOCOL.md §10); default 256 KiB.
	ContentRef int
	// Heartbeat is the announce interval; default 1 s.
	Heartbeat time.Duration
	// Workers bounds concurrent conversions; default 32.
	Workers int
	NoTrace bool
	// Seal: off announces no encryption key, so that content reaches the
	// processor unsealed; otherwise (auto, required) it announces its key,
	// opens sealed content and seals what it forwards of a sealed message
	// (PROTOCOL.md §14).
	Seal miap.SealMode
}

// Processor is one processor instance.
type Processor struct {
	cfg     Config
	nc      *nats.Conn
	tracer  *tracing.Publisher // nil: no trace events
	eng     *miap.Engine
	js      jetstream.JetStream
	clock   miapnats.Clock
	client  *miapnats.Client
	log     zerolog.Logger
	content *miapnats.ContentStore
	sem     chan struct{}
	wg      sync.WaitGroup
}

// New returns a processor. keys must hold the processor party's K1.
func New(cfg Config, nc *nats.Conn, keys *miap.Keyring, log zerolog.Logger) (*Processor, error) {
	if cfg.Party == "" {
		cfg.Party = "proc"
	}
	if cfg.Instance == "" {
		var b [4]byte
		rand.Read(b[:])
		cfg.Instance = cfg.Party + "-" + hex.EncodeToString(b[:])
	}
	if cfg.Version == "" {
		cfg.Version = "0.1.0"
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 32
	}
	if !keys.Has(cfg.Party) {
		return nil, fmt.Errorf("processor: no key for party %q", cfg.Party)
	}
	m, err := miap.ParseSealMode(string(cfg.Seal))
	if err != nil {
		return nil, fmt.Errorf("processor: %w", err)
	}
	cfg.Seal = m
	for _, c := range cfg.Conversions {
		if !miap.ValidName(c.Name) || c.Converter == nil || schemas.MediaType(c.To) == "" ||
			c.Cost < 0 || c.Cost > schemas.MaxConversionCost {
			return nil, fmt.Errorf("processor: invalid conversion %q (a name, a converter, a content type to produce, a cost of 0 to %d)",
				c.Name, schemas.MaxConversionCost)
		}
	}
	p := &Processor{cfg: cfg, nc: nc, sem: make(chan struct{}, cfg.Workers),
		log: log.With().Str("role", "processor").Str("instance", cfg.Instance).Logger()}
	eng, err := miap.New(miap.Config{Keys: keys, Now: p.clock.Now})
	if err != nil {
		return nil, err
	}
	p.eng = eng
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	p.js = js
	p.content = miapnats.NewContentStore(js)
	p.content.Threshold = cfg.ContentRef
	p.client = &miapnats.Client{NC: nc, Eng: eng, Clock: &p.clock, Party: cfg.Party, Timeout: cfg.RequestTimeout, Content: p.content}
	if !cfg.NoTrace {
		p.tracer = tracing.New(nc, cfg.Party, 0, 0)
	}
	return p, nil
}

// Run serves until ctx is done. ready, if not nil, is called once serving.
func (p *Processor) Run(ctx context.Context, ready func()) error {
	svc, err := micro.AddService(p.nc, micro.Config{
		Name: "uims-processor", Version: p.cfg.Version, QueueGroup: "uims-proc",
		Description: "UIMS message processor: content conversions",
		Metadata:    map[string]string{"instance": p.cfg.Instance, "party": p.cfg.Party},
	})
	if err != nil {
		return fmt.Errorf("processor: micro service: %w", err)
	}
	var convs []schemas.Conversion
	for _, c := range p.cfg.Conversions {
		c := c
		convs = append(convs, c.Conversion)
		h := func(req micro.Request) { p.dispatch(ctx, req, c) }
		if err := svc.AddEndpoint(c.Name, micro.HandlerFunc(h), micro.WithEndpointSubject(schemas.ProcessorIM(c.Name))); err != nil {
			svc.Stop()
			return err
		}
		login := func(req micro.Request) { p.login(req) }
		if err := svc.AddEndpoint(c.Name+"-login", micro.HandlerFunc(login), micro.WithEndpointSubject(schemas.ProcessorLogin(c.Name))); err != nil {
			svc.Stop()
			return err
		}
	}
	p.announce(convs, p.cfg.Heartbeat*3)
	p.nc.Flush()
	if ready != nil {
		ready()
	}
	p.log.Info().Int("conversions", len(convs)).Msg("processor serving")
	t := time.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	go miapnats.FollowOwnKeys(ctx, p.js, p.cfg.Party, 2*time.Second, p.eng, func(kids []string, err error) {
		if err == nil {
			p.log.Info().Strs("kids", kids).Msg("keys from the key registry")
		}
	})
	for {
		select {
		case <-ctx.Done():
			p.announce(convs, 0)
			err := svc.Stop()
			p.wg.Wait()
			p.tracer.Flush()
			return err
		case <-t.C:
			p.announce(convs, p.cfg.Heartbeat*3)
		}
	}
}

func (p *Processor) announce(convs []schemas.Conversion, ttl time.Duration) {
	a := schemas.Announce{V: schemas.Version, Gateway: p.cfg.Party, Medium: "processor", Instance: p.cfg.Instance,
		Conversions: convs, TTL: ttl.Milliseconds(), At: p.clock.Now().UnixMilli()}
	if p.cfg.Seal != miap.SealOff {
		a.XKey = p.eng.SealPublic(p.cfg.Party)
	}
	if err := miapnats.Announce(p.nc, p.eng, &a); err != nil {
		p.log.Debug().Err(err).Msg("cannot announce")
	}
}

// trace publishes a protocol-step event for observers.
func (p *Processor) trace(ev schemas.TraceEvent) {
	if p.tracer == nil {
		return
	}
	ev.Party, ev.By, ev.At = p.cfg.Party, p.cfg.Instance, p.clock.Now().UnixMilli()
	p.tracer.Publish(&ev)
}

// sender names the originator: "Name <address>", or the address.
func sender(e schemas.Endpoint) string {
	if e.Name != "" && e.Address != "" {
		return e.Name + " <" + e.Address + ">"
	}
	if e.Address != "" {
		return e.Address
	}
	return e.Name
}

// respondError answers a request with a wire code (PROTOCOL.md §9), with
// micro's error headers but not through Request.Error, whose record of the
// error micro's handler reads once Handle returns: the processor answers
// from its own goroutines after that (dispatch; a data race otherwise).
func respondError(req micro.Request, c schemas.Code) {
	req.Respond(nil, micro.WithHeaders(micro.Headers{schemas.HdrError: {c.String()},
		micro.ErrorHeader: {c.String() + ": " + c.Text()}, micro.ErrorCodeHeader: {strconv.Itoa(int(c))}}))
}

// login answers a strict-mode transfer login (§6.5) like a destination does.
func (p *Processor) login(req micro.Request) {
	f, err := miap.ParseHeader(req.Headers(), req.Data())
	if err == nil {
		err = p.eng.VerifyTicket(p.cfg.Party, f)
	}
	if err != nil {
		respondError(req, miap.CodeOf(err))
		return
	}
	tok, err := p.eng.SessionToken(p.cfg.Party, f.ID)
	if err != nil {
		respondError(req, schemas.CodeInternal)
		return
	}
	req.Respond(nil, micro.WithHeaders(micro.Headers{miap.HdrGwSess: {miap.EncodeB64(tok)}}))
}

func (p *Processor) dispatch(ctx context.Context, req micro.Request, c Conversion) {
	select {
	case p.sem <- struct{}{}:
	default:
		respondError(req, schemas.CodeBusy)
		return
	}
	p.wg.Add(1)
	go func() {
		defer func() { <-p.sem; p.wg.Done() }()
		reply, err := p.process(ctx, nats.Header(req.Headers()), req.Data(), c)
		if err != nil {
			code := miap.CodeOf(err)
			p.log.Warn().Err(err).Str("conversion", c.Name).Str("code", code.String()).Msg("conversion refused")
			p.trace(schemas.TraceEvent{Step: "convert", Result: "refused", Code: code.String(), Conversion: c.Name})
			respondError(req, code)
			return
		}
		// The next hop's answer (with its receipt) goes back to the originator as it is.
		req.Respond(reply.Data, micro.WithHeaders(micro.Headers(reply.Header)))
	}()
}

// process converts one instant message and forwards it (§6.7).
func (p *Processor) process(ctx context.Context, h nats.Header, body []byte, c Conversion) (*nats.Msg, error) {
	tr, err := p.eng.OpenTransfer(p.cfg.Party, h, body, p.content.Fetch(ctx))
	if err != nil {
		return nil, err
	}
	if p.cfg.Strict || h.Get(miap.HdrGwSess) != "" {
		tok, err := miap.DecodeB64(h.Get(miap.HdrGwSess))
		if err == nil {
			err = p.eng.CheckSessionToken(p.cfg.Party, tr.Ticket.ID, tok)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", miap.ErrBadSession, err)
		}
	}
	var routed schemas.RoutedIMI
	if err := json.Unmarshal(tr.Routed(), &routed); err != nil {
		return nil, fmt.Errorf("%w: routed imi: %w", miap.ErrMalformed, err)
	}
	// Sealed content opens here; what goes on is sealed again (§14.5).
	sealedRoute := routed.IMI.Content.Sealed != ""
	if err := p.eng.Unseal(p.cfg.Party, h, tr, sealedRoute && routed.Seal[p.cfg.Party] != ""); err != nil {
		return nil, err
	}
	step := -1
	for i, s := range routed.Conversions {
		if s.Processor == p.cfg.Party && s.Conversion == c.Name {
			step = i
			break
		}
	}
	if step < 0 {
		return nil, schemas.Errorf(schemas.CodeNotAllowed, nil, "conversion "+c.Name+" is not on this route")
	}
	if !schemas.TypeMatches([]string{c.From}, tr.Ticket.CType) {
		return nil, schemas.Errorf(schemas.CodeUnsupported, nil, fmt.Sprintf("conversion %s takes %s, not %s", c.Name, c.From, tr.Ticket.CType))
	}
	deadline := time.UnixMilli(routed.Deadline)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	out, err := c.Converter.Convert(cctx, Content{Type: tr.Ticket.CType, Data: tr.Content},
		Route{Options: routed.Options, Targets: schemas.Targets(routed.Conversions, step),
			Sender: sender(routed.IMI.From), Created: time.UnixMilli(routed.IMI.Created).UTC()})
	if err != nil {
		// A converter may say the content is malformed or too large; any
		// other failure is CONVERSION_FAILED.
		var se *schemas.Error
		if errors.As(err, &se) && (se.Code == schemas.CodeMalformed || se.Code == schemas.CodeTooLarge) {
			detail := c.Name
			if se.Detail != "" {
				detail += ": " + se.Detail
			}
			return nil, schemas.Errorf(se.Code, se.Err, detail)
		}
		return nil, schemas.Errorf(schemas.CodeConversionFailed, err, c.Name)
	}
	// The converted content goes to the step after the last one that
	// produces its type: the next step, or a later one (§6.7).
	next, ok := schemas.NextStep(routed.Conversions, step, out.Type)
	if !ok {
		return nil, schemas.Errorf(schemas.CodeConversionFailed, nil, fmt.Sprintf("%s produced %q, which the route does not take", c.Name, out.Type))
	}
	nextHop := routed.Dest.Gateway
	if next < len(routed.Conversions) {
		nextHop = routed.Conversions[next].Processor
	}
	// A sealed message stays sealed: the output is sealed before the
	// report, which names the sealed bytes the next ticket binds, and its
	// key is wrapped to the next hop's key of the routed IMI (§14.5).
	wire, how := out.Data, ""
	var sealed *miap.Sealed
	if sealedRoute {
		if routed.Seal[nextHop] == "" || !p.eng.CanSeal(p.cfg.Party) {
			return nil, schemas.Errorf(schemas.CodeSealUnavailable, nil, "no encryption key to seal to "+nextHop)
		}
		if sealed, err = p.eng.Seal(p.cfg.Party, routed.IMI.MsgID, out.Data); err != nil {
			return nil, schemas.Errorf(schemas.CodeInternal, err, "seal")
		}
		wire, how = sealed.Content, miap.SealScheme
	}
	sum := sha256.Sum256(wire)
	oc := schemas.Content{Type: out.Type, Length: int64(len(wire)), SHA256: hex.EncodeToString(sum[:]), Sealed: how}
	if err := oc.Validate(); err != nil {
		return nil, schemas.Errorf(schemas.CodeConversionFailed, err, c.Name+" output")
	}
	report, _ := json.Marshal(schemas.ConvReport{V: schemas.Version, Tx: routed.Tx, MsgID: routed.IMI.MsgID, Conversion: c.Name, Step: step, Content: oc})
	rf, reply, err := p.client.Request(cctx, schemas.SubjectBrokerConv, &miap.Frame{Purpose: miap.PurposeConv, Party: p.cfg.Party,
		ID: tr.Ticket.ID, CType: oc.Type, CLen: oc.Length, CSHA: sum[:], Body: report}, miap.PurposeConvReply, nil)
	if err != nil {
		return nil, err
	}
	ticket, err := miapnats.TicketFrom(reply.Header, rf.ID, p.cfg.Party, oc.Type, oc.Length, sum[:], routed.Deadline, rf.Body)
	if err != nil {
		return nil, err
	}
	subject, login := schemas.GatewayIM(routed.Dest.Gateway), schemas.GatewayLogin(routed.Dest.Gateway)
	if next < len(routed.Conversions) {
		conv := routed.Conversions[next].Conversion
		subject, login = schemas.ProcessorIM(conv), schemas.ProcessorLogin(conv)
	}
	p.log.Info().Str("msg_id", routed.IMI.MsgID).Str("conversion", c.Name).Int("step", step).Str("type", oc.Type).
		Int64("in", tr.Ticket.CLen).Int64("out", oc.Length).Str("next", subject).Msg("converted")
	p.trace(schemas.TraceEvent{Step: "convert", MsgID: routed.IMI.MsgID, Tx: routed.Tx, Result: "ok", Conversion: c.Name, Next: subject})
	var wrap map[string][]string
	if sealed != nil {
		wrap = map[string][]string{}
		if err := p.eng.Wrap(wrap, sealed, routed.Seal[nextHop], ticket.ID); err != nil {
			return nil, schemas.Errorf(schemas.CodeSealUnavailable, err, "wrap to "+nextHop)
		}
	}
	fwd, err := p.client.TransferWith(cctx, subject, login, p.cfg.Strict, ticket, wire, wrap)
	if fwd != nil {
		return fwd, nil // the next hop's answer, error or not, goes back as it is
	}
	return nil, err
}
