package bench

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// ProfileTop summarises a CPU profile: the top functions and the CPU share
// of each component and activity. (A small reader of the pprof protobuf
// format, so that the tool needs no dependency; `go tool pprof` reads the
// same files.)
type ProfileTop struct {
	File         string   `json:"file"`
	Label        string   `json:"label"`
	TotalSeconds float64  `json:"total_seconds"`
	Top          []FnCost `json:"top"`
	Components   []Share  `json:"components"`
	Activities   []Share  `json:"activities"`
}

// FnCost is one function's flat and cumulative share of the samples.
type FnCost struct {
	Name string  `json:"name"`
	Flat float64 `json:"flat"`
	Cum  float64 `json:"cum"`
}

// Share is a part of the CPU time.
type Share struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
}

// components maps function name prefixes to components; the first frame
// from the leaf that matches one owns the sample.
var components = []struct{ prefix, name string }{
	{"github.com/uims/uims/broker.", "uims broker"},
	{"github.com/uims/uims/gateways/kit.", "uims gateway kit"},
	{"github.com/uims/uims/gateways/web.", "uims web gateway (inbox)"},
	{"github.com/uims/uims/miap/miapnats.", "uims miap/miapnats"},
	{"github.com/uims/uims/miap/miapredis.", "uims miap/miapredis"},
	{"github.com/uims/uims/miap.", "uims miap"},
	{"github.com/uims/uims/schemas.", "uims schemas"},
	{"github.com/uims/uims/internal/bench.", "bench (senders, reference flows)"},
	{"github.com/nats-io/nats-server/", "nats-server (embedded)"},
	{"github.com/nats-io/nats.go/", "nats.go client"},
	{"github.com/nats-io/nats.go.", "nats.go client"},
	{"github.com/redis/go-redis/", "go-redis client"},
	{"github.com/rs/zerolog", "zerolog"},
	{"github.com/klauspost/compress", "nats-server (embedded)"},
}

func component(stack []string) string {
	for _, fn := range stack {
		for _, c := range components {
			if strings.HasPrefix(fn, c.prefix) {
				return c.name
			}
		}
	}
	for _, fn := range stack {
		if strings.HasPrefix(fn, "runtime.gcBgMarkWorker") || strings.HasPrefix(fn, "runtime.bgsweep") || strings.HasPrefix(fn, "runtime.bgscavenge") {
			return "Go runtime: background GC"
		}
	}
	return "Go runtime and standard library (other)"
}

func has(stack []string, prefixes ...string) bool {
	for _, fn := range stack {
		for _, p := range prefixes {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
	}
	return false
}

// activity classifies a sample by what the CPU did; the first rule that
// matches wins.
func activity(stack []string) string {
	leaf := ""
	if len(stack) > 0 {
		leaf = stack[0]
	}
	switch {
	case has(stack, "runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"):
		return "GC (background)"
	case strings.HasPrefix(leaf, "syscall.") || strings.HasPrefix(leaf, "internal/runtime/syscall") || strings.HasPrefix(leaf, "runtime/internal/syscall"):
		switch {
		case has(stack, "syscall.Fsync", "syscall.Fdatasync", "os.(*File).Sync"):
			return "system calls: fsync (JetStream writes)"
		case has(stack, "syscall.Pwrite", "syscall.pwrite", "os.(*File).Write"):
			return "system calls: file writes"
		case has(stack, "net.(*netFD)", "internal/poll.(*FD).Read", "internal/poll.(*FD).Write", "internal/poll.(*FD).Writev"):
			return "system calls: socket I/O"
		}
		return "system calls: other"
	case has(stack, "encoding/json."):
		return "JSON encode/decode"
	case has(stack, "crypto/"):
		return "crypto (SHA-256, HMAC, random)"
	case has(stack, "runtime.mallocgc", "runtime.gcAssist", "runtime.newobject", "runtime.makeslice", "runtime.growslice"):
		return "allocation and GC assist"
	case strings.HasPrefix(leaf, "runtime.memmove") || strings.HasPrefix(leaf, "runtime.memclr"):
		return "memory copies"
	case has(stack, "runtime.futex", "runtime.usleep", "runtime.epoll", "runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.mcall", "runtime.notesleep", "runtime.stealWork"):
		return "scheduler, wake-ups"
	}
	return "other"
}

// TopOfProfile reads a CPU profile written by runtime/pprof.
func TopOfProfile(path, label string, n int) (*ProfileTop, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if raw, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	p, err := parseProfile(raw)
	if err != nil {
		return nil, err
	}
	vi := len(p.sampleTypes) - 1 // cpu nanoseconds is the last value
	for i, t := range p.sampleTypes {
		if t == "cpu" {
			vi = i
		}
	}
	if vi < 0 {
		return nil, errors.New("bench: profile has no sample types")
	}
	flat, cum := map[string]int64{}, map[string]int64{}
	comp, act := map[string]int64{}, map[string]int64{}
	var total int64
	for _, s := range p.samples {
		if vi >= len(s.values) {
			continue
		}
		v := s.values[vi]
		total += v
		var stack []string
		for _, lid := range s.locs {
			stack = append(stack, p.locations[lid]...)
		}
		if len(stack) > 0 {
			flat[stack[0]] += v
		}
		seen := map[string]bool{}
		for _, fn := range stack {
			if !seen[fn] {
				seen[fn] = true
				cum[fn] += v
			}
		}
		comp[component(stack)] += v
		act[activity(stack)] += v
	}
	if total == 0 {
		return nil, errors.New("bench: empty profile")
	}
	t := &ProfileTop{File: path, Label: label, TotalSeconds: float64(total) / 1e9}
	var names []string
	for k := range flat {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return flat[names[i]] > flat[names[j]] })
	for i, k := range names {
		if i == n {
			break
		}
		t.Top = append(t.Top, FnCost{Name: k, Flat: float64(flat[k]) / float64(total), Cum: float64(cum[k]) / float64(total)})
	}
	t.Components = shares(comp, total)
	t.Activities = shares(act, total)
	return t, nil
}

func shares(m map[string]int64, total int64) []Share {
	var out []Share
	for k, v := range m {
		out = append(out, Share{Name: k, Share: float64(v) / float64(total)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Share > out[j].Share })
	return out
}

type profSample struct {
	locs   []uint64
	values []int64
}

type profile struct {
	sampleTypes []string
	samples     []profSample
	locations   map[uint64][]string // leaf-most (inlined) function first
}

// parseProfile decodes the parts of profile.proto the summary needs.
func parseProfile(b []byte) (*profile, error) {
	var strs []string
	var sampleTypeIdx []int64
	type loc struct {
		id  uint64
		fns []uint64
	}
	var locs []loc
	fnName := map[uint64]int64{}
	p := &profile{locations: map[uint64][]string{}}
	err := fields(b, func(tag int, wire int, v uint64, data []byte) error {
		switch tag {
		case 1: // sample_type
			return fields(data, func(t, _ int, v uint64, _ []byte) error {
				if t == 1 {
					sampleTypeIdx = append(sampleTypeIdx, int64(v))
				}
				return nil
			})
		case 2: // sample
			var s profSample
			err := fields(data, func(t, w int, v uint64, d []byte) error {
				switch t {
				case 1:
					if w == 2 {
						return varints(d, func(x uint64) { s.locs = append(s.locs, x) })
					}
					s.locs = append(s.locs, v)
				case 2:
					if w == 2 {
						return varints(d, func(x uint64) { s.values = append(s.values, int64(x)) })
					}
					s.values = append(s.values, int64(v))
				}
				return nil
			})
			p.samples = append(p.samples, s)
			return err
		case 4: // location
			var l loc
			err := fields(data, func(t, _ int, v uint64, d []byte) error {
				switch t {
				case 1:
					l.id = v
				case 4: // line
					return fields(d, func(t2, _ int, v2 uint64, _ []byte) error {
						if t2 == 1 {
							l.fns = append(l.fns, v2)
						}
						return nil
					})
				}
				return nil
			})
			locs = append(locs, l)
			return err
		case 5: // function
			var id uint64
			var name int64
			err := fields(data, func(t, _ int, v uint64, _ []byte) error {
				switch t {
				case 1:
					id = v
				case 2:
					name = int64(v)
				}
				return nil
			})
			fnName[id] = name
			return err
		case 6: // string_table
			strs = append(strs, string(data))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	str := func(i int64) string {
		if i >= 0 && int(i) < len(strs) {
			return strs[i]
		}
		return "?"
	}
	for _, i := range sampleTypeIdx {
		p.sampleTypes = append(p.sampleTypes, str(i))
	}
	for _, l := range locs {
		var names []string
		for _, f := range l.fns {
			names = append(names, str(fnName[f]))
		}
		if len(names) == 0 {
			names = []string{"?"}
		}
		p.locations[l.id] = names
	}
	return p, nil
}

// fields calls fn for each field of a protobuf message: tag, wire type and
// the varint value or the length-delimited bytes.
func fields(b []byte, fn func(tag, wire int, v uint64, data []byte) error) error {
	for len(b) > 0 {
		key, n := uvarint(b)
		if n <= 0 {
			return errors.New("bench: bad protobuf key")
		}
		b = b[n:]
		tag, wire := int(key>>3), int(key&7)
		var v uint64
		var data []byte
		switch wire {
		case 0:
			v, n = uvarint(b)
			if n <= 0 {
				return errors.New("bench: bad protobuf varint")
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errors.New("bench: short fixed64")
			}
			b = b[8:]
		case 2:
			l, n := uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return errors.New("bench: bad protobuf length")
			}
			data = b[n : n+int(l)]
			b = b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return errors.New("bench: short fixed32")
			}
			b = b[4:]
		default:
			return fmt.Errorf("bench: protobuf wire type %d", wire)
		}
		if err := fn(tag, wire, v, data); err != nil {
			return err
		}
	}
	return nil
}

func varints(b []byte, fn func(uint64)) error {
	for len(b) > 0 {
		v, n := uvarint(b)
		if n <= 0 {
			return errors.New("bench: bad packed varint")
		}
		fn(v)
		b = b[n:]
	}
	return nil
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	var s uint
	for i, c := range b {
		if i == 10 {
			return 0, -1
		}
		if c < 0x80 {
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}
