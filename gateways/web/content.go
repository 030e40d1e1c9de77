package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// Content of inbox entries. An entry is one stream message, and a stream
// message is at most the server's max_payload (8 MiB under uims run; the
// NATS default is 1 MiB), while an entry's content can be as large as an
// e-mail (SIZE, 25 MiB) or an upload (Config.MaxUpload). So content over
// inlineContent bytes is stored before its entry as chunks of at most
// maxChunk bytes, uims.inbox.<shard>.<client>.<id>.<n> (n from 0), in the
// entry's own stream: same shard, same retention and the same
// permissions as the entry, and the paging filter
// uims.inbox.<shard>.<client>.* does not see them. The entry records the
// count and the size. A content of 5 MB held inline once made the entry
// (JSON, base64) larger than max_payload, and every such delivery failed
// BUSY: a 5 MB mail got "451 4.3.0 busy" (issue 18).
//
// A chunk is published with the message id <id>:<n> (the stream's
// duplicate window makes a redelivery a no-op); chunks of a delivery that
// failed before its entry stay unnamed by any entry until the stream's
// MaxAge removes them.

const (
	// inlineContent is the largest content kept in the entry itself.
	inlineContent = 256 << 10
	// maxChunk is the largest chunk, below max_payload less headroom.
	maxChunk = 1 << 20
)

// chunkSubject is the subject of chunk n of a message's content.
func (in *inbox) chunkSubject(client, msgID string, n int) string {
	return in.inboxSubject(client, msgID) + "." + strconv.Itoa(n)
}

// chunkSize is the chunk size on this connection.
func (in *inbox) chunkSize() int {
	size := maxChunk
	if mp := int(in.nc.MaxPayload()); mp > 0 && mp-(8<<10) < size {
		size = mp - (8 << 10)
	}
	return max(size, 4<<10)
}

// putChunks stores s.Content in chunks and replaces it in s by their count
// and size.
func (in *inbox) putChunks(ctx context.Context, client string, s *stored) error {
	size := in.chunkSize()
	k := in.shard(s.ID)
	n := (len(s.Content) + size - 1) / size
	errs := make(chan error, n)
	for i := range n {
		chunk := s.Content[i*size : min((i+1)*size, len(s.Content))]
		subject, id := in.chunkSubject(client, s.ID, i), s.ID+":"+strconv.Itoa(i)
		if in.gc != nil && in.async[k] {
			// side by side, so that the chunks share journal records
			go func() {
				_, err := in.gc.Publish(ctx, subject, chunk, id)
				errs <- err
			}()
			continue
		}
		f, err := in.js.PublishAsync(subject, chunk, jetstream.WithMsgID(id))
		if err != nil {
			return fmt.Errorf("web: store content: %w", err)
		}
		go func() {
			select {
			case <-f.Ok():
				errs <- nil
			case err := <-f.Err():
				errs <- err
			case <-ctx.Done():
				errs <- ctx.Err()
			}
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("web: store content: %w", first)
	}
	s.Size, s.Chunks, s.Content = int64(len(s.Content)), n, nil
	return nil
}

// errContentLost is content an entry names that its stream no longer
// holds whole.
var errContentLost = errors.New("web: content of the inbox entry is missing")

// content returns a reader of an entry's content. For chunked content it
// reads the first chunk before it returns, so that a store failure is an
// error here, before a download has begun.
func (in *inbox) content(ctx context.Context, client string, s *stored) (io.Reader, error) {
	if s.Chunks == 0 {
		return bytes.NewReader(s.Content), nil
	}
	st, err := in.js.Stream(ctx, InboxStreamName(in.shard(s.ID)))
	if err != nil {
		return nil, err
	}
	r := &chunkReader{ctx: ctx, in: in, st: st, client: client, s: s}
	if err := r.fill(); err != nil {
		return nil, err
	}
	return r, nil
}

// chunkReader reads chunked content one chunk at a time.
type chunkReader struct {
	ctx    context.Context
	in     *inbox
	st     jetstream.Stream
	client string
	s      *stored
	next   int    // the next chunk to read
	buf    []byte // the unread rest of the current chunk
	read   int64  // bytes read so far
}

func (r *chunkReader) fill() error {
	m, err := r.st.GetLastMsgForSubject(r.ctx, r.in.chunkSubject(r.client, r.s.ID, r.next))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%w: chunk %d of %s", errContentLost, r.next, r.s.ID)
	}
	if err != nil {
		return err
	}
	r.buf = m.Data
	r.next++
	return nil
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.next >= r.s.Chunks {
			if r.read != r.s.Size {
				return 0, fmt.Errorf("%w: %d of %d bytes", errContentLost, r.read, r.s.Size)
			}
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.read += int64(n)
	return n, nil
}
