package manager

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

func TestFetchObjectStore(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.CreateObjectStore(t.Context(), jetstream.ObjectStoreConfig{Bucket: "ARCHIVES"})
	if err != nil {
		t.Fatal(err)
	}
	a := buildArchive(t, "web", "1", map[string]string{"big": strings.Repeat("data ", 100_000)})
	if _, err := obs.PutBytes(t.Context(), "web/web-1.tgz", a.data); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(t.Context(), "empty", nil); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		cfg     FetchConfig
		m       spec.Machine
		wantErr string
		wantIs  error
	}{
		{name: "object with slashes", m: a.entry("nats://ARCHIVES/web/web-1.tgz")},
		{name: "missing bucket", m: a.entry("nats://NOPE/web/web-1.tgz"), wantErr: `object store bucket "NOPE" not found`},
		{name: "missing object", m: a.entry("nats://ARCHIVES/web/web-2.tgz"),
			wantErr: `object "web/web-2.tgz" not found in object store bucket "ARCHIVES"`},
		{name: "object over the declared size", m: func() spec.Machine { e := a.entry("nats://ARCHIVES/web/web-1.tgz"); e.Size = 100; return e }(),
			wantErr: "archive exceeds declared size 100 (the object's size is", wantIs: packer.ErrArchiveTooLarge},
		{name: "object over the node cap", cfg: FetchConfig{MaxSize: 50}, m: func() spec.Machine { e := a.entry("nats://ARCHIVES/web/web-1.tgz"); e.Size = 0; return e }(),
			wantErr: "archive exceeds size limit 50", wantIs: packer.ErrArchiveTooLarge},
		{name: "credentials make no sense", m: func() spec.Machine { e := a.entry("nats://ARCHIVES/web/web-1.tgz"); e.Auth = "x"; return e }(),
			wantErr: "credentials do not apply to nats:// sources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Conn = nc
			f, _ := newTestFetcher(t, tt.cfg)
			got, err := fetchAll(t, f, tt.m)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("fetch %s = %v, want %q", tt.m.Source, err, tt.wantErr)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("fetch %s = %v, want errors.Is %v", tt.m.Source, err, tt.wantIs)
				}
				return
			}
			if err != nil || !bytes.Equal(got, a.data) {
				t.Fatalf("fetch %s = %d bytes, %v, want the archive", tt.m.Source, len(got), err)
			}
		})
	}

	t.Run("install", func(t *testing.T) {
		env := newTestEnv(t, nil, FetchConfig{Conn: nc})
		out, _, err := env.inst.Install(t.Context(), a.entry("nats://ARCHIVES/web/web-1.tgz"), 1)
		if err != nil || out != EntryInstalled {
			t.Fatalf("Install from the object store = %q, %v", out, err)
		}
		if got := readFile(t, env.machines+"/web/big"); len(got) != 500_000 {
			t.Errorf("installed big is %d bytes", len(got))
		}
	})
}

// TestFetchObjectStoreRecreated checks that a Fetcher, which opens each
// bucket once, still finds an archive after the bucket was deleted and
// made again (a new stream behind the same name), and says the bucket is
// missing while it is.
func TestFetchObjectStoreRecreated(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	a := buildArchive(t, "web", "1", map[string]string{"run.sh": "echo hi\n"})
	upload := func() {
		t.Helper()
		obs, err := js.CreateObjectStore(t.Context(), jetstream.ObjectStoreConfig{Bucket: "ARCHIVES"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obs.PutBytes(t.Context(), "web-1.tgz", a.data); err != nil {
			t.Fatal(err)
		}
	}
	upload()
	f, _ := newTestFetcher(t, FetchConfig{Conn: nc})
	m := a.entry("nats://ARCHIVES/web-1.tgz")
	if got, err := fetchAll(t, f, m); err != nil || !bytes.Equal(got, a.data) {
		t.Fatalf("first fetch = %d bytes, %v", len(got), err)
	}
	if err := js.DeleteObjectStore(t.Context(), "ARCHIVES"); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchAll(t, f, m); err == nil {
		t.Fatal("fetch from a deleted bucket succeeded")
	}
	if _, err := fetchAll(t, f, m); err == nil || !strings.Contains(err.Error(), `object store bucket "ARCHIVES" not found`) {
		t.Errorf("fetch once the bucket is gone = %v, want it to say the bucket is not found", err)
	}
	upload()
	if got, err := fetchAll(t, f, m); err != nil || !bytes.Equal(got, a.data) {
		t.Errorf("fetch after the bucket was made again = %d bytes, %v", len(got), err)
	}
}
