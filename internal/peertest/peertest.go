// Package peertest finds the peer programs that tests run against (swaks,
// mailpit, the nats CLI, node...): programs nobody here wrote. A missing
// peer skips its test loudly, or fails it under CI, which installs every
// peer (.ci/deps.d/).
package peertest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Require returns the path of program name, found on PATH or in a Go bin
// folder (GOBIN, GOPATH/bin, ~/go/bin), or reports it Missing.
func Require(t testing.TB, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	Missing(t, name+" not found on PATH or in GOPATH/bin", install)
	return ""
}

// Missing skips the test with a loud reason, or fails it when CI is set.
func Missing(t testing.TB, what, install string) {
	t.Helper()
	msg := fmt.Sprintf("PEER MISSING: %s; install with: %s (.ci/run does, through .ci/deps.d/)", what, install)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func goBinDirs() []string {
	var dirs []string
	if gb := os.Getenv("GOBIN"); gb != "" {
		dirs = append(dirs, gb)
	}
	gp := os.Getenv("GOPATH")
	if gp == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gp = strings.TrimSpace(string(out))
		}
	}
	for _, p := range filepath.SplitList(gp) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	return dirs
}

// Output collects a peer process's stdout and stderr for the test's log;
// it is safe for the process's writer goroutines and the test at once.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
