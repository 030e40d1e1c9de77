package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/uims/uims/gateways/web"
	"github.com/uims/uims/schemas"
)

// Figures are one scenario's line of the table.
type Figures struct {
	Scenario string
	Fault    time.Duration // how long the fault lasted
	Sent     int
	Accepted int // 202/200
	Refused  int // a permanent error
	Unknown  int // no answer for good within the load's bound
	Held     int // accepted as held (scheduled, send_at): released after the fault
	// Delivered: accepted messages in the recipient's inbox; Failed:
	// accepted messages whose final status is failed.
	Delivered, Failed int
	// Lost: accepted, not in the inbox, and not failed. Duplicated: more
	// than one inbox entry for a message id. Conflicting: in the inbox and
	// failed, two terminal outcomes in the history, or refused for good and
	// delivered all the same. Open: accepted and still not terminal after
	// the settle period.
	Lost, Duplicated, Conflicting, Open int
	Retries                             int // client retries (tries beyond the first)
	Took                                time.Duration
	Problems                            []string // one line per lost, duplicated, conflicting or open message
}

// Bad reports whether the scenario broke the promise.
func (f *Figures) Bad() bool { return f.Lost+f.Duplicated+f.Conflicting+f.Open > 0 }

// Checker reads the outcome of a run from the fabric.
type Checker struct {
	Topology *Topology
	Token    string        // the sender's bearer token, to ask the statuses
	To       string        // the recipient's client id
	Settle   time.Duration // how long to wait for every accepted message to be terminal
}

// Check computes the figures of a run from the clients' outcomes, the
// messages' final statuses and the recipient's inbox streams.
func (c *Checker) Check(ctx context.Context, scenario string, fault time.Duration, out []Outcome) (*Figures, error) {
	var accepted []string
	for _, o := range out {
		if o.Accepted {
			accepted = append(accepted, o.ID)
		}
	}
	t0 := time.Now()
	status := c.statuses(ctx, accepted)
	t1 := time.Now()
	inbox, err := c.inbox(ctx)
	if err != nil {
		return nil, err
	}
	c.Topology.Logf("chaos: statuses in %v, inbox in %v", t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	return Classify(scenario, fault, out, status, inbox), nil
}

// Classify computes the figures from the clients' outcomes, the final
// statuses of the accepted messages (by message id) and the number of
// entries per message id in the recipient's inbox.
func Classify(scenario string, fault time.Duration, out []Outcome, status map[string]*schemas.TxStatus, inbox map[string]int) *Figures {
	f := &Figures{Scenario: scenario, Fault: fault, Sent: len(out)}
	problem := func(kind string, o Outcome, st *schemas.TxStatus) {
		var h []string
		state := "?"
		if st != nil {
			state = st.State
			for _, e := range st.History {
				h = append(h, e.Status+"/"+e.Code+"/"+e.Party)
			}
		}
		f.Problems = append(f.Problems, fmt.Sprintf("%s %s key=%s accepted=%v code=%d %s tries=%d state=%s inbox=%d history=%v",
			kind, o.ID, o.Key, o.Accepted, o.Code, o.ErrCode, o.Tries, state, inbox[o.ID], h))
	}
	for _, o := range out {
		f.Retries += o.Tries - 1
		switch {
		case o.Accepted:
			f.Accepted++
			if o.Status == schemas.StatusHeld {
				f.Held++
			}
		case o.Unknown:
			f.Unknown++
		default:
			f.Refused++
		}
		n := inbox[o.ID]
		if n > 1 {
			f.Duplicated++
			problem("DUPLICATED", o, status[o.ID])
		}
		if !o.Accepted {
			if n > 0 && !o.Unknown {
				f.Conflicting++
				problem("CONFLICTING(refused, delivered)", o, status[o.ID])
			}
			continue
		}
		st := status[o.ID]
		state := ""
		if st != nil {
			state = st.State
		}
		if n > 0 {
			f.Delivered++
		}
		if state == schemas.StatusFailed {
			f.Failed++
		}
		switch {
		case n > 0 && state == schemas.StatusFailed:
			f.Conflicting++
			problem("CONFLICTING(delivered, failed)", o, st)
		case st != nil && terminals(st) > 1:
			f.Conflicting++
			problem("CONFLICTING(two outcomes)", o, st)
		case n == 0 && state != schemas.StatusFailed:
			f.Lost++
			problem("LOST", o, st)
		case !terminal(state):
			f.Open++
			problem("OPEN", o, st)
		}
	}
	return f
}

// unknownTx is the state of a message whose transaction the brokers do not
// know (404 UNKNOWN_TX).
const unknownTx = "unknown-tx"

func terminal(state string) bool {
	return state == schemas.StatusDelivered || state == schemas.StatusRead || state == schemas.StatusFailed
}

// terminals counts the distinct outcomes in a history: delivered (read
// counts as delivered) and failed.
func terminals(st *schemas.TxStatus) int {
	var d, f bool
	for _, e := range st.History {
		switch e.Status {
		case schemas.StatusDelivered, schemas.StatusRead:
			d = true
		case schemas.StatusFailed:
			f = true
		}
	}
	n := 0
	if d {
		n++
	}
	if f {
		n++
	}
	return n
}

// statuses asks every message's status (GET /api/v1/messages/{id} as the
// sender) until all are terminal or Settle has passed.
func (c *Checker) statuses(ctx context.Context, ids []string) map[string]*schemas.TxStatus {
	res := map[string]*schemas.TxStatus{}
	var mu sync.Mutex
	deadline := time.Now().Add(c.Settle)
	pending := ids
	for len(pending) > 0 {
		jobs := make(chan string)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range jobs {
					if st := c.status(ctx, id); st != nil {
						mu.Lock()
						res[id] = st
						mu.Unlock()
					}
				}
			}()
		}
		for _, id := range pending {
			jobs <- id
		}
		close(jobs)
		wg.Wait()
		var next []string
		for _, id := range pending {
			// A transaction the brokers do not know (after a 202, which
			// comes after the brokers stored it) will not come back.
			if st := res[id]; st == nil || !terminal(st.State) && st.State != unknownTx {
				next = append(next, id)
			}
		}
		pending = next
		if len(pending) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Second)
	}
	return res
}

func (c *Checker) status(ctx context.Context, id string) *schemas.TxStatus {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Topology.HTTP+"/api/v1/messages/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusNotFound {
		return &schemas.TxStatus{MsgID: id, State: unknownTx}
	}
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var st schemas.TxStatus
	if json.Unmarshal(b, &st) != nil {
		return nil
	}
	return &st
}

// inbox counts the recipient's inbox entries per message id from every web
// inbox stream (UIMS_INBOX_0…), read as the administrator: the stream's
// per-subject counts (uims.inbox.<shard>.<client>.<msgid>), which count
// every stored entry, where the web gateway's own listing de-duplicates.
func (c *Checker) inbox(ctx context.Context) (map[string]int, error) {
	nc, err := nats.Connect(strings.Join(c.Topology.NATSURLs, ","),
		nats.UserCredentials(filepath.Join(c.Topology.Dir, "creds", "admin.creds")), nats.Name("chaos-checker"))
	if err != nil {
		return nil, fmt.Errorf("chaos: checker: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for i := 0; ; i++ {
		name := web.InboxStreamName(i)
		var subjects map[string]uint64
		for try := 0; ; try++ { // a stream may be electing a leader
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			subjects, err = streamSubjects(sctx, js, name, "uims.inbox."+strconv.Itoa(i)+"."+c.To+".*")
			cancel()
			if err == nil || errors.Is(err, jetstream.ErrStreamNotFound) || try == 20 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if i == 0 {
				return nil, fmt.Errorf("chaos: checker: no inbox stream")
			}
			return counts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("chaos: checker: stream %s: %w", name, err)
		}
		for subj, n := range subjects {
			counts[subj[strings.LastIndexByte(subj, '.')+1:]] += int(n)
		}
	}
}

func streamSubjects(ctx context.Context, js jetstream.JetStream, name, filter string) (map[string]uint64, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// Table formats the figures as a Markdown table.
func Table(fs []*Figures) string {
	var b strings.Builder
	b.WriteString("| scenario | fault | sent | accepted | held | refused | unknown | delivered | failed | lost | duplicated | conflicting | open | retries | took |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range fs {
		fault := "—"
		if f.Fault > 0 {
			fault = f.Fault.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n", f.Scenario, fault, f.Sent,
			f.Accepted, f.Held, f.Refused, f.Unknown, f.Delivered, f.Failed, f.Lost, f.Duplicated, f.Conflicting, f.Open, f.Retries,
			f.Took.Round(time.Second))
	}
	return b.String()
}
