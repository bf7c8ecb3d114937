package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribeBuild(t *testing.T) {
	platform := " " + runtime.GOOS + "/" + runtime.GOARCH
	checkout := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/mms-io/mms", Version: "v0.0.0-20261201200937-d7cf025912d8"},
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "d7cf025912d804b157d0f3e91097b526a6d57803"},
			{Key: "vcs.time", Value: "2026-12-01T20:09:37Z"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		name                   string
		bi                     *debug.BuildInfo
		stampV, stampC, stampD string
		want                   buildInfo
	}{
		{name: "no build info", want: buildInfo{Version: "dev", Commit: "unknown", Date: "unknown", Go: runtime.Version() + platform}},
		{name: "go install @v1.2.3 (no vcs)", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			want: buildInfo{Version: "v1.2.3", Commit: "unknown", Date: "unknown", Go: "go1.26.8" + platform}},
		{name: "go build in a modified checkout", bi: checkout,
			want: buildInfo{Version: "v0.0.0-20261201200937-d7cf025912d8", Commit: "d7cf025912d804b157d0f3e91097b526a6d57803+modified", Date: "2026-12-01T20:09:37Z", Go: "go1.26.8" + platform}},
		{name: "devel without vcs", bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			want: buildInfo{Version: "dev", Commit: "unknown", Date: "unknown", Go: "go1.26.8" + platform}},
		{name: "stamps win", bi: checkout, stampV: "v2.0.0", stampC: "abc", stampD: "2027-01-01T00:00:00Z",
			want: buildInfo{Version: "v2.0.0", Commit: "abc", Date: "2027-01-01T00:00:00Z", Go: "go1.26.8" + platform}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeBuild(tt.bi, tt.stampV, tt.stampC, tt.stampD); got != tt.want {
				t.Errorf("describeBuild() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestVersion runs `mms version` and `mms --version` of the real binary,
// plain and stamped with -ldflags -X: both print the same four lines.
func TestVersion(t *testing.T) {
	plain := mmsBinary(t)
	stamped := filepath.Join(t.TempDir(), "mms")
	build := exec.Command("go", "build", "-o", stamped, "-ldflags", "-X main.version=v9.8.7 -X main.commit=c0ffee -X main.date=2027-02-03T04:05:06Z", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with stamps: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		bin  string
		want []string
	}{
		{plain, []string{"mms ", "commit: ", "date:   ", "go:     " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}},
		{stamped, []string{"mms v9.8.7", "commit: c0ffee", "date:   2027-02-03T04:05:06Z", "go:     " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}},
	} {
		var outputs []string
		for _, args := range [][]string{{"version"}, {"--version"}} {
			out, err := exec.Command(tt.bin, args...).Output()
			if err != nil {
				t.Fatalf("%s %s: %v", tt.bin, args[0], err)
			}
			outputs = append(outputs, string(out))
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("%s %s printed %q, want %d lines", tt.bin, args[0], out, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) || len(lines[i]) == len(w) && strings.HasSuffix(w, " ") {
					t.Errorf("%s %s line %d = %q, want %q…", tt.bin, args[0], i+1, lines[i], w)
				}
			}
		}
		if outputs[0] != outputs[1] {
			t.Errorf("mms version = %q, mms --version = %q; want the same", outputs[0], outputs[1])
		}
	}
}

func TestHelpListsCompletion(t *testing.T) {
	help := mmsOK(t, "", "--help").stdout
	for _, cmd := range []string{"completion", "version"} {
		if !strings.Contains(help, "\n  "+cmd+" ") {
			t.Errorf("mms --help does not list %s:\n%s", cmd, help)
		}
	}
}

// TestSystemdUnit checks examples/systemd/mms-agent.service with
// systemd-analyze verify (ExecStart pointed at a real mms binary, since
// verify checks that it exists): no warning, no error. It also checks the
// hardening the README promises is there.
func TestSystemdUnit(t *testing.T) {
	unit := readFile(t, filepath.Join("..", "..", "examples", "systemd", "mms-agent.service"))
	for _, want := range []string{"\nDynamicUser=yes\n", "\nStateDirectory=mms\n", "\nProtectSystem=strict\n", "\nNoNewPrivileges=yes\n",
		"\nRestart=on-failure\n", "\nCapabilityBoundingSet=\n", "\nExecStart=/usr/local/bin/mms agent "} {
		if !strings.Contains(unit, want) {
			t.Errorf("mms-agent.service lacks %q", strings.TrimSpace(want))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed here, so the unit cannot be verified")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mms-agent.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/mms", mmsBinary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify mms-agent.service: %v\n%s", err, out)
	}
}
