package packer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestExtractSmallAllocatesLittle: a machine of a few small files is
// extracted and verified with buffers sized to it. Each install used to
// allocate (and zero) about 1 MiB of 256 KiB buffers, which in a fleet of
// agents sharing a process was most of what the collector had to deal
// with per put.
func TestExtractSmallAllocatesLittle(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"machine.yaml": "name: small\nversion: 1.0.0\ninitial_state: run\ntransitions: []\nwatchers: []\n",
		"check.sh":     "#!/bin/sh\necho ok\n",
	})
	var archive bytes.Buffer
	info, err := CreateArchive(t.Context(), src, "small", &archive)
	if err != nil {
		t.Fatal(err)
	}
	want := Expect{Name: "small", Checksum: info.Checksum, VerifyChecksum: info.VerifyChecksum}
	stages := t.TempDir()
	var v TreeVerifier
	const runs = 8
	extract := func(i int) {
		stage := filepath.Join(stages, fmt.Sprint(i))
		if err := os.Mkdir(stage, 0o755); err != nil {
			t.Fatal(err)
		}
		x, err := ExtractArchive(t.Context(), bytes.NewReader(archive.Bytes()), stage, want, ExtractOptions{NoSync: true, SizeHint: info.Size})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(t.Context(), x.Dir, want.VerifyChecksum, true); err != nil {
			t.Fatal(err)
		}
	}
	extract(-1) // warm up: lazily initialized tables of the libraries
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range runs {
		extract(i)
	}
	runtime.ReadMemStats(&after)
	const most = 256 << 10
	per := (after.TotalAlloc - before.TotalAlloc) / runs
	t.Logf("%d KiB per extraction", per>>10)
	if per > most {
		t.Errorf("extracting and verifying a %d-byte archive allocated %d KiB, want at most %d KiB", info.Size, per>>10, most>>10)
	}
}

func TestCopyBufSizes(t *testing.T) {
	var c copyBuf
	for _, tc := range []struct {
		ask       int64
		len, have int
	}{
		{0, 1, archiveMinBufSize},
		{100, 100, archiveMinBufSize},
		{archiveMinBufSize + 1, archiveMinBufSize + 1, 2 * archiveMinBufSize},
		{10, 10, 2 * archiveMinBufSize}, // kept, not shrunk
		{1 << 30, archiveCopyBufSize, archiveCopyBufSize},
	} {
		b := c.get(tc.ask)
		if len(b) != tc.len || len(c.b) != tc.have {
			t.Errorf("get(%d) = %d bytes of a %d-byte buffer, want %d of %d", tc.ask, len(b), len(c.b), tc.len, tc.have)
		}
	}
}
