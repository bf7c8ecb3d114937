package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// show labels signatures truthfully: claimed key ids for v2, "a v1
// signature" for a signed v1 spec (which names no key), none for unsigned.
func TestShowSignedBy(t *testing.T) {
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))
	tests := []struct {
		name string
		pack []string
		want string
	}{
		{"v2", []string{"--key-file", key}, `(?m)^Signed by:\s+[0-9a-f]{16} \(claimed; run mms verify\)$`},
		{"v1", []string{"--key-file", key, "--format", "v1"}, `(?m)^Signed by:\s+a v1 signature \(v1 names no key: check it with 'mms verify SPEC KEY'\)$`},
		{"unsigned", []string{"--unsigned"}, `(?m)^Signed by:\s+none \(unsigned\)$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := mmsOK(t, "", append([]string{"pack", machines}, tt.pack...)...).stdout
			r := mmsOK(t, env, "show", "-")
			if !regexp.MustCompile(tt.want).MatchString(r.stdout) {
				t.Errorf("show:\n%s\nwant a line matching %s", r.stdout, tt.want)
			}
		})
	}
}

// Without SPEC, show reads the live spec and its revision, the one
// put --revision checks.
func TestShowLive(t *testing.T) {
	url, _ := putServer(t)
	dir := t.TempDir()
	key, _ := newKeyPair(t, dir, "ops")
	machines := writeFile(t, dir, "machines.json", machinesJSON("web"))

	r := mms(t, "", "show", "--server", url)
	if r.code != 1 || !strings.Contains(r.stderr, "no spec published on nats://") || !strings.Contains(r.stderr, "MACHINES/machines does not exist") {
		t.Errorf("show --server with no spec = exit %d, stderr %q", r.code, r.stderr)
	}
	mmsOK(t, mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "7").stdout, "put", "--server", url)
	mmsOK(t, mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "8").stdout, "put", "--server", url)
	r = mmsOK(t, "", "show", "--server", url)
	for _, w := range []string{`(?m)^Live:\s+MACHINES/machines revision 2 \('mms put --revision 2' publishes only over this one\)$`, `(?m)^Serial:\s+8$`, `(?m)^web\s+https://`} {
		if !regexp.MustCompile(w).MatchString(r.stdout) {
			t.Errorf("show --server:\n%s\nwant a line matching %s", r.stdout, w)
		}
	}
	r = mmsOK(t, "", "show", "--server", url, "--json")
	var v showView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Revision != 2 || v.Serial != 8 || v.Bucket != "MACHINES" || v.Signatures != 1 {
		t.Errorf("show --server --json = %+v (%v), want revision 2, serial 8, bucket MACHINES, 1 signature", v, err)
	}
	// The hint of put --revision leads here.
	next := mmsOK(t, "", "pack", machines, "--key-file", key, "--serial", "9").stdout
	r = mms(t, next, "put", "--server", url, "--revision", "1")
	if r.code != 1 || !strings.Contains(r.stderr, "review the current spec with 'mms show --server "+url) {
		t.Errorf("put --revision 1 = exit %d, stderr %q; want the show --server hint", r.code, r.stderr)
	}
	mmsOK(t, next, "put", "--server", url, "--revision", "2")

	spec := writeFile(t, dir, "spec.json", next)
	if r := mms(t, "", "show", spec, "--server", url); r.code != 1 || !strings.Contains(r.stderr, "not both") {
		t.Errorf("show SPEC --server = exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}
}
