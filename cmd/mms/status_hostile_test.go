package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/mms-io/mms/agent"
	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// hostile strings a publisher on NATS (or a KV writer) could put in events,
// status documents and specs: recolour, clear screen, retitle, overwrite a
// line, erase it, an 8-bit CSI, a bidi override, invalid UTF-8.
var hostile = []string{
	"\x1b[31mRED\x1b[0m", "\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "ok\rFAIL", "\x1b[2K\x1b[1A", "x\u009b31my", "evil\u202etxt.exe", "bad\xffutf8",
}

// hostileText is every hostile string in one.
var hostileText = strings.Join(hostile, " ")

// assertInert fails unless out holds nothing a terminal acts on: no
// control character but the newline, no format character, valid UTF-8.
func assertInert(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s output is not UTF-8:\n%q", what, out)
	}
	for i, r := range out {
		if r == '\n' {
			continue
		}
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			t.Errorf("%s output holds %U at byte %d:\n%q", what, r, i, out)
			return
		}
	}
}

// The human-readable output of status, status NODE, status --check,
// events and show stays inert whatever the documents, events and specs
// hold, and still shows the text (escaped).
func TestHostileOutputIsInert(t *testing.T) {
	now := time.Now().UTC()
	doc := statusDocument("evil\x1b]0;pwned\x07", 17, now, nodestatus.Machine{
		Name: "m\x1b[2J", Version: "1\r9", State: "RUN\x1b[31m", Path: "/m", LastOutcome: "installed", LastError: hostileText,
	})
	doc.AgentVersion = hostileText
	doc.Trust.KeyIDs = []string{hostileText}
	doc.Seen = &nodestatus.Seen{Serial: 4, Format: "v2", Digest: hostileText, Outcome: "ignored-older\x1b[2K", Reason: hostileText}
	doc.Entries = []nodestatus.Entry{
		{Name: "e\x1b[1A", Outcome: "failed", Reason: hostileText, Checksum: hostileText, Version: hostileText},
		{Name: "d", Outcome: "downloading", Download: &nodestatus.Download{Done: 1, Total: 2}},
	}
	doc.LastError, doc.LastErrorAt = hostileText, now
	url := statusFleet(t, doc)

	for _, args := range [][]string{
		{"status", "--server", url},
		{"status", "--server", url, "--check"},
		{"status", "--server", url, doc.Identity},
	} {
		r := mms(t, "", args...)
		assertInert(t, strings.Join(args[:1], " ")+" stdout", r.stdout)
		assertInert(t, strings.Join(args[:1], " ")+" stderr", r.stderr)
		if !strings.Contains(r.stdout+r.stderr, `\x1b[31mRED\x1b[0m`) {
			t.Errorf("mms %v does not show the escaped text:\n%s%s", args, r.stdout, r.stderr)
		}
	}

	// Events: a hostile exec failure, manager report and host event.
	out, errOut, stop := runUntil(t, "events", "--server", url)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	state := func(typ, outcome string, data map[string]any) []byte {
		data["machine"], data["type"], data["name"], data["outcome"] = "m\x1b[2J", typ, "w\r", outcome
		return choriaEvent(t, "io.choria.machine.watcher."+typ+".v1.state", "evil\x1b]0;pwned\x07", data)
	}
	msgs := map[string][]byte{
		agent.WatcherStateSubject("exec"): state("exec", "failure", map[string]any{"exit_code": 3, "stderr": hostileText + "\nsecond", "error": hostileText}),
		agent.WatcherStateSubject("machines"): state("machines", "failure", map[string]any{"serial": 5, "format": "v2", "results": []map[string]any{
			{"name": "e\x1b[1A", "outcome": "failed", "reason": hostileText}, {"name": "s", "outcome": "skipped", "match": hostileText},
		}}),
		agent.WatcherStateSubject("host"): state("host", "loaded", map[string]any{"version": hostileText, "previous_version": "1\r"}),
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		for subject, msg := range msgs {
			if err := nc.Publish(subject, msg); err != nil {
				return err
			}
		}
		if n := strings.Count(out.String(), "\n"); n < len(msgs) {
			return fmt.Errorf("%d event lines so far", n)
		}
		return nil
	})
	stop()
	assertInert(t, "events stdout", out.String())
	assertInert(t, "events stderr", errOut.String())
	for _, w := range []string{`exit 3: \x1b[31mRED`, `e\x1b[1A failed (\x1b[31mRED`, `loaded: 1\r → \x1b[31mRED`} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("events output lacks %q:\n%s", w, out.String())
		}
	}

	// show: a spec (anyone can write an unsigned one to the bucket)
	// decoded without verifying.
	env, err := packer.Seal(packer.FormatV2, &spec.Spec{Serial: 1, IssuedAt: now.Truncate(time.Second), Machines: []spec.Machine{{
		Name: "web", Source: "https://example.net/\x1b[2J", Checksum: sumA, VerifyChecksum: sumB, Match: hostileText,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	r := mmsOK(t, string(env), "show", "-")
	assertInert(t, "show stdout", r.stdout)
	if !strings.Contains(r.stdout, `https://example.net/\x1b[2J`) {
		t.Errorf("show does not show the escaped source:\n%s", r.stdout)
	}
}
