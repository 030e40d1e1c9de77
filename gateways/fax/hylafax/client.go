package hylafax

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config says how to reach hfaxd.
type Config struct {
	// Addr is hfaxd's host:port (its client-server port, 4559 by default).
	Addr string
	// User is the login name (USER); Password is sent when hfaxd asks for
	// one (331). hosts.hfaxd decides who may log in.
	User, Password string
	// Timeout bounds each operation (connect, commands, the document
	// transfer); default 30 s.
	Timeout time.Duration
}

// Job is a fax to submit.
type Job struct {
	// Number is the dial string (an E.164 number, "+15550133").
	Number string
	// Document is the TIFF (Class F, RFC 3949) to send.
	Document []byte
	// FromUser is the sender shown in the job (JPARM FROMUSER).
	FromUser string
	// MaxDials and MaxTries bound the attempts (0: the server's defaults).
	MaxDials, MaxTries int
	// KillAfter is how long the server keeps trying (LASTTIME, at most
	// 99 days); default 3 hours.
	KillAfter time.Duration
}

// JobStatus is a job's state as hfaxd reports it (JPARM STATE etc.).
type JobStatus struct {
	ID string
	// State is one of PENDING, SLEEPING, BLOCKED, READY, ACTIVE, SUSPENDED,
	// DONE, FAILED (hfaxd's job state names).
	State string
	// Status is the reason of the last failure ("Busy signal detected",
	// "No carrier", "Job aborted by request"), empty when none.
	Status string
	// Pages sent of TotalPages.
	Pages, TotalPages int
	// Dials made so far.
	Dials int
	// Gone is true when the server no longer knows the job (removed and
	// cleaned from the done queue).
	Gone bool
}

// Done reports whether the job finished (sent, failed or removed).
func (s *JobStatus) Done() bool { return s.Gone || s.State == "DONE" || s.State == "FAILED" }

// Sent reports whether the fax went out: done with every page sent.
func (s *JobStatus) Sent() bool {
	return s.State == "DONE" && s.TotalPages > 0 && s.Pages >= s.TotalPages
}

// ReplyError is a reply of class 4 or 5 to a command.
type ReplyError struct {
	Cmd   string
	Reply *Reply
}

func (e *ReplyError) Error() string { return fmt.Sprintf("hylafax: %s: %s", e.Cmd, e.Reply) }

// Temporary reports a 4xx reply.
func (e *ReplyError) Temporary() bool { return e.Reply.Class() == 4 }

// Client talks to one hfaxd. Each operation opens its own connection, so
// a Client is safe for concurrent use.
type Client struct{ cfg Config }

// New returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("hylafax: no server address")
	}
	if cfg.User == "" {
		cfg.User = "uims"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Client{cfg: cfg}, nil
}

// Addr is the server's address.
func (c *Client) Addr() string { return c.cfg.Addr }

// conn is one logged-in control connection.
type conn struct {
	nc net.Conn
	br *bufio.Reader
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("hylafax: connect %s: %w", c.cfg.Addr, err)
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	cn := &conn{nc: nc, br: bufio.NewReader(nc)}
	r, err := ReadReply(cn.br)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if r.Code != 220 {
		nc.Close()
		return nil, &ReplyError{Cmd: "greeting", Reply: r}
	}
	r, err = cn.cmd("USER " + c.cfg.User)
	if err == nil && r.Code == 331 {
		r, err = cn.cmd("PASS " + c.cfg.Password)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	if r.Code != 230 {
		nc.Close()
		return nil, &ReplyError{Cmd: "USER", Reply: r}
	}
	return cn, nil
}

func (cn *conn) close() {
	cn.nc.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(cn.nc, "QUIT\r\n")
	cn.nc.Close()
}

// cmd sends a command line and reads its reply.
func (cn *conn) cmd(line string) (*Reply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("hylafax: command with a line break refused")
	}
	if _, err := io.WriteString(cn.nc, line+"\r\n"); err != nil {
		return nil, fmt.Errorf("hylafax: send %s: %w", verb(line), err)
	}
	return ReadReply(cn.br)
}

// ok sends a command that must succeed with a 2xx reply.
func (cn *conn) ok(line string) (*Reply, error) {
	r, err := cn.cmd(line)
	if err != nil {
		return nil, err
	}
	if r.Class() != 2 {
		return nil, &ReplyError{Cmd: verb(line), Reply: r}
	}
	return r, nil
}

func verb(line string) string {
	if strings.HasPrefix(line, "PASS ") {
		return "PASS"
	}
	if i := strings.IndexByte(line, ' '); i > 0 && !strings.HasPrefix(line, "JPARM ") {
		return line[:i]
	}
	if f := strings.Fields(line); len(f) >= 2 {
		return f[0] + " " + f[1]
	}
	return line
}

// Submit stores the document on the server and submits a job that sends
// it to the number; it returns the job id.
func (c *Client) Submit(ctx context.Context, j Job) (string, error) {
	if j.Number == "" || strings.Trim(j.Number, "+0123456789") != "" {
		return "", fmt.Errorf("hylafax: invalid dial string %q", j.Number)
	}
	if strings.ContainsAny(j.FromUser, "\r\n\"") {
		return "", fmt.Errorf("hylafax: invalid sender name")
	}
	if j.FromUser == "" {
		j.FromUser = "uims" // hfaxd refuses a job without FROMUSER
	}
	cn, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer cn.close()
	for _, l := range []string{"TYPE I", "MODE S", "FORM TIFF"} {
		if _, err := cn.ok(l); err != nil {
			return "", err
		}
	}
	doc, err := cn.store(ctx, j.Document)
	if err != nil {
		return "", err
	}
	r, err := cn.ok("JNEW")
	if err != nil {
		return "", err
	}
	id, ok := jobOf(r.Text())
	if !ok {
		return "", fmt.Errorf("%w: JNEW reply without a job id: %s", ErrProtocol, r)
	}
	params := []string{
		"JPARM FROMUSER \"" + j.FromUser + "\"",
		"JPARM DIALSTRING " + j.Number,
		"JPARM EXTERNAL " + j.Number,
		"JPARM NOTIFY none",
	}
	if j.MaxDials > 0 {
		params = append(params, "JPARM MAXDIALS "+strconv.Itoa(j.MaxDials))
	}
	if j.MaxTries > 0 {
		params = append(params, "JPARM MAXTRIES "+strconv.Itoa(j.MaxTries))
	}
	// LASTTIME must be given: without it hfaxd 6.0.7 records a kill time
	// in the past and the scheduler refuses the job ("Kill time expired").
	m := int(j.KillAfter / time.Minute)
	if m <= 0 {
		m = 3 * 60
	}
	params = append(params, fmt.Sprintf("JPARM LASTTIME %02d%02d%02d", m/(24*60), m/60%24, m%60))
	params = append(params, "JPARM DOCUMENT "+doc)
	for _, p := range params {
		if _, err := cn.ok(p); err != nil {
			return "", err
		}
	}
	if _, err := cn.ok("JSUBM"); err != nil {
		return "", err
	}
	return id, nil
}

// store sends the document with STOT over a passive data connection and
// returns the server's file name.
func (cn *conn) store(ctx context.Context, doc []byte) (string, error) {
	r, err := cn.ok("PASV")
	if err != nil {
		return "", err
	}
	addr, err := pasvAddr(r.Text())
	if err != nil {
		return "", err
	}
	var d net.Dialer
	dc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("hylafax: data connection: %w", err)
	}
	defer dc.Close()
	if dl, ok := ctx.Deadline(); ok {
		dc.SetDeadline(dl)
	} else {
		dc.SetDeadline(time.Now().Add(5 * time.Minute))
	}
	r, err = cn.cmd("STOT")
	if err != nil {
		return "", err
	}
	if r.Class() != 1 {
		return "", &ReplyError{Cmd: "STOT", Reply: r}
	}
	name, _ := fileOf(r.Text())
	if _, err := dc.Write(doc); err != nil {
		return "", fmt.Errorf("hylafax: send document: %w", err)
	}
	dc.Close()
	r, err = ReadReply(cn.br)
	if err != nil {
		return "", err
	}
	if r.Class() != 2 {
		return "", &ReplyError{Cmd: "STOT", Reply: r}
	}
	if n, ok := fileOf(r.Text()); ok {
		name = n
	}
	if name == "" {
		return "", fmt.Errorf("%w: STOT reply without a file name: %s", ErrProtocol, r)
	}
	return name, nil
}

// Status reads a job's state. A job the server does not know (any more)
// is Gone.
func (c *Client) Status(ctx context.Context, id string) (*JobStatus, error) {
	if id == "" || strings.Trim(id, "0123456789") != "" {
		return nil, fmt.Errorf("hylafax: invalid job id %q", id)
	}
	cn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cn.close()
	s := &JobStatus{ID: id}
	r, err := cn.cmd("JOB " + id)
	if err != nil {
		return nil, err
	}
	if r.Class() == 5 {
		s.Gone = true
		s.Status = r.Text()
		return s, nil
	}
	if r.Class() != 2 {
		return nil, &ReplyError{Cmd: "JOB", Reply: r}
	}
	get := func(p string) (string, error) {
		r, err := cn.cmd("JPARM " + p)
		if err != nil {
			return "", err
		}
		if r.Class() != 2 {
			return "", &ReplyError{Cmd: "JPARM " + p, Reply: r}
		}
		return strings.TrimSpace(r.Text()), nil
	}
	if s.State, err = get("STATE"); err != nil {
		var re *ReplyError
		if errors.As(err, &re) && re.Reply.Class() == 5 { // "job deleted by another party"
			s.Gone, s.Status = true, re.Reply.Text()
			return s, nil
		}
		return nil, err
	}
	if s.Status, err = get("STATUS"); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		v    *int
	}{{"NPAGES", &s.Pages}, {"TOTPAGES", &s.TotalPages}, {"TOTDIALS", &s.Dials}} {
		v, err := get(p.name)
		if err != nil {
			return nil, err
		}
		*p.v, _ = strconv.Atoi(v)
	}
	return s, nil
}

// Kill removes a job (JKILL), as faxrm does.
func (c *Client) Kill(ctx context.Context, id string) error {
	if id == "" || strings.Trim(id, "0123456789") != "" {
		return fmt.Errorf("hylafax: invalid job id %q", id)
	}
	cn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cn.close()
	if _, err := cn.ok("JOB " + id); err != nil {
		return err
	}
	_, err = cn.ok("JKILL")
	return err
}
