package hylafax

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("220 vm server (HylaFAX (tm) Version 6.0.7) ready.\r\n" +
		"211-Status\r\nline two\r\n211 End\r\n" + "bad\r\n"))
	r, err := ReadReply(br)
	if err != nil || r.Code != 220 || !strings.Contains(r.Text(), "HylaFAX") {
		t.Fatalf("greeting: %+v %v", r, err)
	}
	r, err = ReadReply(br)
	if err != nil || r.Code != 211 || len(r.Lines) != 3 || r.Lines[2] != "End" {
		t.Fatalf("multi-line: %+v %v", r, err)
	}
	if _, err := ReadReply(br); err == nil {
		t.Fatal("a line without a code was taken as a reply")
	}
}

func TestReplyFields(t *testing.T) {
	if f, ok := fileOf("Transfer complete (FILE: /tmp/doc3.tif)."); !ok || f != "/tmp/doc3.tif" {
		t.Fatalf("fileOf = %q %v", f, ok)
	}
	if j, ok := jobOf("New job created: jobid: 12 groupid: 12."); !ok || j != "12" {
		t.Fatalf("jobOf = %q %v", j, ok)
	}
	if a, err := pasvAddr("Entering passive mode (127,0,0,1,140,45)"); err != nil || a != "127.0.0.1:35885" {
		t.Fatalf("pasvAddr = %q %v", a, err)
	}
	if _, err := pasvAddr("Entering passive mode (127,0,0,1,999,45)"); err == nil {
		t.Fatal("octet 999 accepted")
	}
}

// FuzzReadReply feeds the reply reader arbitrary server output: it must
// not panic, must keep its bounds, and a reply it returns must have a
// code of 100 to 599.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 vm server (HylaFAX (tm) Version 6.0.7) ready.\r\n",
		"227 Entering passive mode (127,0,0,1,140,45)\r\n",
		"150 FILE: /tmp/doc2.tif (Opening new data connection).\r\n",
		"200 New job created: jobid: 2 groupid: 2.\r\n",
		"211-a\r\nb\r\n211 c\r\n",
		"460 Failed to submit job 2: Unspecified reason (scheduler NAK'd request).\r\n",
		"21",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ReadReply(bufio.NewReader(strings.NewReader(s)))
		if err != nil {
			return
		}
		if r.Code < 100 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > maxReplyLines {
			t.Fatalf("reply %+v from %q", r, s)
		}
		fileOf(r.Text())
		jobOf(r.Text())
		pasvAddr(r.Text())
	})
}
