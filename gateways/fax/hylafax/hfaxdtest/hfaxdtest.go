// Package hfaxdtest runs a real HylaFAX server for tests: the Debian
// package's faxq (the scheduler) and hfaxd (the client-server protocol) on
// a spool of their own in a temporary folder, hfaxd on a random port of
// 127.0.0.1, and no modem: a job waits in the send queue (state W or B)
// until it is removed or its kill time passes. HylaFAX counts a job's
// pages only when it prepares the job for a modem; a modem announced with
// faxmodem on a device that does not exist (or /dev/null) left faxsend
// hanging, so that a removed job never finished (docs/FAX.md, Tests).
//
// HylaFAX drops privileges to its fax user (uucp on Debian); the spool is
// owned by that user, so the tests run as root (CI does). A missing
// package or user skips loudly, or fails under CI (peertest.Missing).
package hfaxdtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uims/uims/internal/peertest"
)

const install = "apt-get install hylafax-server hylafax-client (.ci/deps.d/fax-gateway.sh)"

// Server is a running HylaFAX.
type Server struct {
	// Addr is hfaxd's host:port.
	Addr string
	// Spool is the spool folder (sendq, doneq, recvq, etc, log).
	Spool string
	// User is the login name of the client programs (the test's user):
	// jobs submitted as User can be removed with faxrm.
	User string
	// Home holds the .hylarc the clients read (faxstat's JobFmt).
	Home string
	t    testing.TB
}

// Start starts faxq and hfaxd; they are stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	faxq := peertest.Require(t, "faxq", install)
	hfaxd := peertest.Require(t, "hfaxd", install)
	if os.Geteuid() != 0 {
		peertest.Missing(t, "root (HylaFAX's spool belongs to its fax user uucp)", "run the tests as root, as CI does")
	}
	u, err := user.Lookup("uucp")
	if err != nil {
		peertest.Missing(t, "the fax user uucp", install)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{"/var/spool/hylafax", "/etc/hylafax"} {
		if _, err := os.Stat(p); err != nil {
			peertest.Missing(t, p, install)
		}
	}
	dir, err := os.MkdirTemp("", "hylafax-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	spool := filepath.Join(dir, "spool")
	// the package's spool skeleton, with its configuration in etc/
	run(t, "cp", "-a", "/var/spool/hylafax/.", spool+"/")
	run(t, "cp", "-a", "/etc/hylafax/.", filepath.Join(spool, "etc")+"/")
	// only loopback clients, no password (hosts.hfaxd(5))
	write(t, filepath.Join(spool, "etc", "hosts.hfaxd"), "127.0.0.1\nlocalhost\n", 0o600)
	run(t, "mkfifo", filepath.Join(spool, "FIFO"))
	run(t, "chown", "-R", fmt.Sprintf("%d:%d", uid, gid), spool)
	// a tmp folder the fax user may write (client's temporary files)
	s := &Server{Spool: spool, Home: filepath.Join(dir, "home"), t: t, User: "root"}
	if me, err := user.Current(); err == nil {
		s.User = me.Username
	}
	os.MkdirAll(s.Home, 0o755)
	write(t, filepath.Join(s.Home, ".hylarc"), "JobFmt: \"%-4j %1a %-16e %5P %3D %s\"\n", 0o644)

	logf, err := os.Create(filepath.Join(dir, "hylafax.log"))
	if err != nil {
		t.Fatal(err)
	}
	q := exec.Command(faxq, "-q", spool, "-D")
	q.Stdout, q.Stderr = logf, logf
	q.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := q.Start(); err != nil {
		t.Fatalf("faxq: %v", err)
	}
	port := freePort(t)
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	h := exec.Command(hfaxd, "-q", spool, "-d", "-l", "127.0.0.1", "-i", strconv.Itoa(port))
	h.Stdout, h.Stderr = logf, logf
	h.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.Start(); err != nil {
		syscall.Kill(-q.Process.Pid, syscall.SIGTERM)
		t.Fatalf("hfaxd: %v", err)
	}
	t.Cleanup(func() {
		// each in its own process group: faxsend children too
		for _, c := range []*exec.Cmd{h, q} {
			syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		}
		for _, c := range []*exec.Cmd{h, q} {
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("hylafax output:\n%s", b)
		}
	})
	// ready: hfaxd greets
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			l, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(l, "220") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hfaxd did not start on %s", s.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// Client runs a HylaFAX client program (faxstat, faxrm, sendfax) against
// the server and returns its output.
func (s *Server) Client(name string, args ...string) (string, error) {
	s.t.Helper()
	bin := peertest.Require(s.t, name, install)
	cmd := exec.Command(bin, append([]string{"-h", s.Addr}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+s.Home, "FAXSERVER="+s.Addr)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func write(t testing.TB, path, s string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// DocPages counts the pages (TIFF directories) of the documents the server
// keeps for job id (docq/doc*.tif.<id>), with tiffinfo.
func (s *Server) DocPages(id string) (int, error) {
	s.t.Helper()
	bin := peertest.Require(s.t, "tiffinfo", "apt-get install libtiff-tools")
	docs, _ := filepath.Glob(filepath.Join(s.Spool, "docq", "doc*.tif."+id))
	if len(docs) == 0 {
		return 0, fmt.Errorf("no document for job %s in docq", id)
	}
	n := 0
	for _, d := range docs {
		out, err := exec.Command(bin, d).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("tiffinfo %s: %v: %s", d, err, out)
		}
		n += strings.Count(string(out), "TIFF Directory at offset")
	}
	return n, nil
}
