package web

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/uims/uims/gateways/kit"
	"github.com/uims/uims/schemas"
)

// Attachments from the web (docs/WEB.md, "Attachments"): POST
// /api/v1/messages with a multipart/form-data body (RFC 7578) takes the
// fields of the JSON form and one or more "file" parts. The message then
// goes as the e-mail gateway sends a mail with attachments
// (gateways/email/mailmsg, "Content convention"): multipart/mixed, the
// text first, then each file, as base64 parts, the files with their names
// (RFC 2231) and types, and the attachment list in the IMI; so web to e-mail and
// e-mail to web keep names and types.
//
// The files stream, part by part, through a base64 encoder into a
// temporary file (Config.UploadDir), never whole in memory; the content
// is then read into one buffer of its exact size: the upload is held once.
// The temporary file is removed however the request ends, and nothing is
// sent before the whole body was read: a client that goes away mid-upload
// leaves nothing behind.

const (
	// DefaultMaxUpload is Config.MaxUpload unless set: the SMTP SIZE the
	// e-mail gateway advertises (email.Config.MaxSize).
	DefaultMaxUpload = 25 << 20
	// MaxFiles is the most files one message takes.
	MaxFiles = 50
	// imiAttachName bounds a name in the IMI's attachment list (the
	// content keeps the whole name).
	imiAttachName = 120
	// imiAttachBudget bounds the attachment list's share of the IMI
	// (schemas.MaxIMI).
	imiAttachBudget = schemas.MaxIMI / 2
)

// errUploadTooLarge: the files are over Config.MaxUpload.
type errUploadTooLarge struct{ limit int64 }

func (e *errUploadTooLarge) Error() string {
	return fmt.Sprintf("attachments over %d bytes", e.limit)
}

// upload is a multipart/form-data message being read.
type upload struct {
	req      SendRequest
	to       []string
	boundary string   // of the multipart/mixed content
	tmp      *os.File // the files' MIME parts, encoded
	w        *bufio.Writer
	size     int64 // bytes in tmp
	raw      int64 // the files' bytes
	atts     []schemas.Attachment
}

// close removes the temporary file.
func (u *upload) close() {
	if u.tmp != nil {
		u.tmp.Close()
		os.Remove(u.tmp.Name())
	}
}

// Limits is the answer to GET /api/v1/limits: what the page checks before
// it sends.
type Limits struct {
	// MaxUpload is the most bytes of files one message takes.
	MaxUpload int64 `json:"max_upload"`
	// MaxFiles is the most files one message takes.
	MaxFiles int `json:"max_files"`
	// MaxBody is the most bytes of a JSON body, or of the fields of a
	// multipart/form-data body.
	MaxBody int64 `json:"max_body"`
}

// postUpload takes POST /api/v1/messages with a multipart/form-data body.
func (g *Gateway) postUpload(w http.ResponseWriter, r *http.Request, c *schemas.ClientInfo) {
	limit := g.cfg.MaxUpload + g.cfg.MaxBody // files, fields and framing
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, schemas.CodeTooLarge,
			fmt.Sprintf("size limit exceeded: a body of %d bytes, at most %d of files (and %d of fields)", r.ContentLength, g.cfg.MaxUpload, g.cfg.MaxBody))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	u := &upload{boundary: boundaryFor(idempotentID(r, c))}
	defer u.close()
	if err := g.readUpload(r, u); err != nil {
		var tl *errUploadTooLarge
		var mbe *http.MaxBytesError
		var se *schemas.Error
		switch {
		case errors.As(err, &tl):
			writeError(w, http.StatusRequestEntityTooLarge, schemas.CodeTooLarge, "size limit exceeded: "+err.Error())
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, schemas.CodeTooLarge,
				fmt.Sprintf("size limit exceeded: body over %d bytes (%d of files, %d of fields)", mbe.Limit, g.cfg.MaxUpload, g.cfg.MaxBody))
		case errors.As(err, &se):
			fail(w, se)
		default:
			// the client went away, or sent no multipart body: nothing sent
			g.log.Info().Err(err).Str("client", c.ID).Msg("upload not read whole; nothing sent")
			writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "malformed multipart/form-data body: "+err.Error())
		}
		return
	}
	to := u.to
	switch {
	case len(to) == 0 || (len(to) == 1 && strings.TrimSpace(to[0]) == ""):
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, "missing \"to\"")
		return
	case len(to) > schemas.MaxGroupRecipients:
		writeError(w, http.StatusBadRequest, schemas.CodeMalformed, fmt.Sprintf("%d recipients, at most %d", len(to), schemas.MaxGroupRecipients))
		return
	}
	s, err := submission(r, c, &u.req, len(u.atts) > 0)
	if err != nil {
		fail(w, err)
		return
	}
	if len(u.atts) > 0 {
		if s.Content, err = u.content(s); err != nil {
			fail(w, schemas.Errorf(schemas.CodeBusy, err, "upload"))
			return
		}
		s.Type = "multipart/mixed; boundary=" + u.boundary
		s.Attachments = imiAttachments(u.atts)
	}
	if len(to) > 1 || strings.HasPrefix(strings.TrimSpace(to[0]), schemas.GroupPrefix) {
		g.sendGroup(w, r, c, s, to)
		return
	}
	g.sendOne(w, r, s, strings.TrimSpace(to[0]))
}

// readUpload reads the form: its fields into u.req and u.to (at most
// MaxBody bytes of them), its files into u.tmp.
func (g *Gateway) readUpload(r *http.Request, u *upload) error {
	mr, err := r.MultipartReader()
	if err != nil {
		return err
	}
	fields := g.cfg.MaxBody
	seen := map[string]bool{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := p.FormName()
		if name == "file" {
			if err := g.readFile(u, p); err != nil {
				return err
			}
			continue
		}
		if p.FileName() != "" {
			return schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("a file in field %q: files go in fields named \"file\"", name))
		}
		v, err := io.ReadAll(io.LimitReader(p, fields+1))
		if err != nil {
			return err
		}
		if fields -= int64(len(v)); fields < 0 {
			return schemas.Errorf(schemas.CodeTooLarge, nil, fmt.Sprintf("fields over %d bytes", g.cfg.MaxBody))
		}
		if name != "to" && seen[name] {
			return schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("field %q twice", name))
		}
		seen[name] = true
		val := string(v)
		switch name {
		case "to":
			u.to = append(u.to, strings.TrimSpace(val))
		case "subject":
			u.req.Subject = val
		case "text":
			// a form's line breaks are CRLF (HTML's form encoding); the
			// JSON form's text has the page's LF
			u.req.Text = strings.ReplaceAll(val, "\r\n", "\n")
		case "html":
			u.req.HTML = val
		case "send_at":
			u.req.SendAt = val
		case "expires_at":
			u.req.ExpiresAt = val
		case "urgent":
			switch strings.ToLower(strings.TrimSpace(val)) {
			case "", "false", "0", "off":
			case "true", "1", "on":
				u.req.Urgent = true
			default:
				return schemas.Errorf(schemas.CodeMalformed, nil, "urgent must be true or false")
			}
		default:
			return schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("unknown field %q", name))
		}
	}
	if u.w != nil {
		if err := u.w.Flush(); err != nil {
			return fmt.Errorf("web: upload: %w", err)
		}
	}
	return nil
}

// readFile encodes one file part into u.tmp as a MIME part of the
// multipart/mixed content.
func (g *Gateway) readFile(u *upload, p *multipart.Part) error {
	if p.FileName() == "" {
		// an empty file input sends a part without a name and bytes
		if n, err := io.Copy(io.Discard, io.LimitReader(p, 1)); err != nil || n == 0 {
			return err
		}
		return schemas.Errorf(schemas.CodeMalformed, nil, "a file without a file name")
	}
	if len(u.atts) == MaxFiles {
		return schemas.Errorf(schemas.CodeMalformed, nil, fmt.Sprintf("more than %d files", MaxFiles))
	}
	if u.tmp == nil {
		f, err := os.CreateTemp(g.cfg.UploadDir, "uims-upload-*")
		if err != nil {
			return schemas.Errorf(schemas.CodeBusy, err, "upload")
		}
		u.tmp, u.w = f, bufio.NewWriterSize(f, 64<<10)
	}
	name := cleanName(p.FileName())
	if name == "" {
		name = fmt.Sprintf("file-%d", len(u.atts)+1)
	}
	ctype := fileType(p.Header.Get("Content-Type"), name)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", mediaTypeWith(ctype, "name", name))
	h.Set("Content-Disposition", mediaTypeWith("attachment", "filename", name))
	h.Set("Content-Transfer-Encoding", "base64")
	var head bytes.Buffer
	head.WriteString("--" + u.boundary + "\r\n")
	for _, k := range []string{"Content-Type", "Content-Disposition", "Content-Transfer-Encoding"} {
		head.WriteString(k + ": " + h.Get(k) + "\r\n")
	}
	head.WriteString("\r\n")
	if _, err := u.w.Write(head.Bytes()); err != nil {
		return schemas.Errorf(schemas.CodeBusy, err, "upload")
	}
	u.size += int64(head.Len())
	n, written, err := base64Lines(u.w, p, g.cfg.MaxUpload-u.raw)
	u.raw += n
	u.size += written
	if errors.Is(err, errOverLimit) {
		return &errUploadTooLarge{limit: g.cfg.MaxUpload}
	}
	if err != nil {
		return err
	}
	if n == 0 {
		u.w.WriteString("\r\n") // an empty file: the delimiter's CRLF
		u.size += 2
	}
	u.atts = append(u.atts, schemas.Attachment{Name: name, Type: ctype, Length: n})
	return nil
}

// errOverLimit: base64Lines read more than its limit.
var errOverLimit = errors.New("web: over the limit")

// base64Lines encodes r to w in base64 lines of 76 characters, each ended
// by CRLF (RFC 2045 §6.8). It returns the bytes read and written; more than
// a read that ends otherwise
// than at the part's end (a client gone mid-upload) is its error. More than
// limit bytes to read is errOverLimit.
func base64Lines(w io.Writer, r io.Reader, limit int64) (read, written int64, err error) {
	const lineBytes = 57 // 76 characters
	in := make([]byte, lineBytes*1024)
	out := make([]byte, 0, 78*1024)
	for {
		n, rerr := readFull(r, in)
		read += int64(n)
		if read > limit {
			return read, written, errOverLimit
		}
		out = out[:0]
		for off := 0; off < n; off += lineBytes {
			out = base64.StdEncoding.AppendEncode(out, in[off:min(off+lineBytes, n)])
			out = append(out, '\r', '\n')
		}
		if len(out) > 0 {
			m, werr := w.Write(out)
			written += int64(m)
			if werr != nil {
				return read, written, schemas.Errorf(schemas.CodeBusy, werr, "upload")
			}
		}
		if rerr == io.EOF {
			return read, written, nil
		}
		if rerr != nil {
			return read, written, rerr
		}
	}
}

// readFull reads until buf is full or r fails; io.EOF means r ended.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// fileType is the media type of an uploaded file: the one its part says
// (the browser's), without parameters but the charset; when it says none,
// the one its name's extension suggests; else application/octet-stream.
func fileType(ct, name string) string {
	if strings.TrimSpace(ct) == "" {
		ct = mime.TypeByExtension(path.Ext(name))
	}
	return safeType(ct)
}

// mediaTypeWith adds a parameter to a media type (RFC 2231 encoded when it
// is not plain ASCII, by mime.FormatMediaType).
func mediaTypeWith(t, key, value string) string {
	mt, params, err := mime.ParseMediaType(t)
	if err != nil {
		mt, params = t, map[string]string{}
	}
	params[key] = value
	if s := mime.FormatMediaType(mt, params); s != "" {
		return s
	}
	return mt
}

// boundaryFor is the boundary of a message's multipart/mixed content:
// derived from its id when Idempotency-Key names it, so that a retry of
// the same upload is the same content (the same SHA-256, hence the same
// message for every hop); else random. Every part is base64, whose
// alphabet has no '-': no part can hold a delimiter line.
func boundaryFor(msgID string) string {
	if msgID == "" {
		var b [12]byte
		rand.Read(b[:])
		return "uims-" + hex.EncodeToString(b[:])
	}
	sum := sha256.Sum256([]byte("uims multipart boundary\x00" + msgID))
	return "uims-" + hex.EncodeToString(sum[:12])
}

// content returns the message's multipart/mixed body: the text part (or
// the HTML) of s, the file parts and the closing delimiter, in one buffer
// of its exact size.
func (u *upload) content(s *kit.Submission) ([]byte, error) {
	var head bytes.Buffer
	if len(s.Content) > 0 {
		head.WriteString("--" + u.boundary + "\r\nContent-Type: " + s.Type + "\r\nContent-Transfer-Encoding: base64\r\n\r\n")
		base64Lines(&head, bytes.NewReader(s.Content), int64(len(s.Content)))
	}
	tail := "--" + u.boundary + "--\r\n"
	out := make([]byte, head.Len()+int(u.size), head.Len()+int(u.size)+len(tail))
	copy(out, head.Bytes())
	if _, err := u.tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(u.tmp, out[head.Len():]); err != nil {
		return nil, err
	}
	return append(out, tail...), nil
}

// imiAttachments is the attachment list of the IMI: the first files, with
// names cut to imiAttachName bytes, within imiAttachBudget (the recipient
// reads the whole list from the content).
func imiAttachments(atts []schemas.Attachment) []schemas.Attachment {
	var out []schemas.Attachment
	size := 0
	for _, a := range atts {
		a.Name = cutUTF8(a.Name, imiAttachName)
		b, _ := json.Marshal(a)
		if size += len(b) + 1; size > imiAttachBudget {
			break
		}
		out = append(out, a)
	}
	return out
}
