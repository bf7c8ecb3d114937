package manager

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// archiveStore starts a server with an ARCHIVES object store and connects
// to it.
func archiveStore(t *testing.T) (*server.Server, *nats.Conn, jetstream.JetStream, jetstream.ObjectStore) {
	t.Helper()
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
	return srv, nc, js, obs
}

func TestFetchObjectStore(t *testing.T) {
	_, nc, _, obs := archiveStore(t)
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

// TestFetchObjectDirect: where the bucket's stream allows direct gets (an
// object store nats.go makes does), a download is direct gets only, in
// batches: no consumer is created and no request goes through the
// JetStream API, whatever the object's size and chunking (several
// batches, by count and by bytes); the bytes are those uploaded. A stream
// without direct gets is read through the object store's consumer.
func TestFetchObjectDirect(t *testing.T) {
	srv, nc, js, obs := archiveStore(t)
	small := buildArchive(t, "web", "1", nil)
	// Incompressible content, so the archive keeps its size: 5 MiB is two
	// batches by bytes; 1 KiB chunks of 100 KiB are four by count.
	noise := make([]byte, 5<<20)
	rand.NewChaCha8([32]byte{}).Read(noise)
	big := buildArchive(t, "web", "2", map[string]string{"noise": string(noise)})
	objects := []struct {
		name  string
		a     testArchive
		chunk uint32
	}{
		{"small.tgz", small, 0},
		{"big.tgz", big, 0},
		{"fine.tgz", buildArchive(t, "web", "3", map[string]string{"noise": string(noise[:100<<10])}), 1024},
	}
	for _, o := range objects {
		meta := jetstream.ObjectMeta{Name: o.name}
		if o.chunk > 0 {
			meta.Opts = &jetstream.ObjectMetaOptions{ChunkSize: o.chunk}
		}
		if _, err := obs.Put(t.Context(), meta, bytes.NewReader(o.a.data)); err != nil {
			t.Fatal(err)
		}
	}

	// Every JetStream API request the downloads make is seen here. A
	// channel subscription, not a handler: nats.go hands a message to the
	// channel in its read loop, before it reads the PONG that ends a
	// Flush, whereas a handler runs later on a goroutine of its own (and
	// a request could be counted against the next download).
	seen := make(chan *nats.Msg, 1024)
	sub, err := nc.ChanSubscribe("$JS.API.>", seen)
	if err != nil {
		t.Fatal(err)
	}
	// The subscription must be on the server before the first download's
	// request is: nats.go sends the SUB from its flusher, later.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	fetchConn := natstest.Connect(t, srv)
	f, _ := newTestFetcher(t, FetchConfig{Conn: fetchConn})
	apiRequests := func() []string {
		t.Helper()
		if err := fetchConn.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			select {
			case m := <-seen:
				if !strings.HasPrefix(m.Subject, "$JS.API.DIRECT.GET.") {
					got = append(got, m.Subject)
				}
			default:
				return got
			}
		}
	}
	// The first download opens the bucket: one stream info.
	for i, o := range objects {
		got, err := fetchAll(t, f, o.a.entry("nats://ARCHIVES/"+o.name))
		if err != nil || !bytes.Equal(got, o.a.data) {
			t.Fatalf("fetch %s = %d bytes, %v, want its %d bytes", o.name, len(got), err, len(o.a.data))
		}
		want := 0
		if i == 0 {
			want = 1
		}
		if reqs := apiRequests(); len(reqs) != want {
			t.Errorf("fetch %s made the JetStream API requests %q, want %d (direct gets only)", o.name, reqs, want)
		}
	}

	// The meta message says what the object is: a link is followed, a
	// deleted object is not found.
	smallInfo, err := obs.GetInfo(t.Context(), "small.tgz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.AddLink(t.Context(), "link.tgz", smallInfo); err != nil {
		t.Fatal(err)
	}
	if got, err := fetchAll(t, f, small.entry("nats://ARCHIVES/link.tgz")); err != nil || !bytes.Equal(got, small.data) {
		t.Fatalf("fetch link.tgz = %d bytes, %v, want small.tgz's %d bytes", len(got), err, len(small.data))
	}
	if err := obs.Delete(t.Context(), "fine.tgz"); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchAll(t, f, small.entry("nats://ARCHIVES/fine.tgz")); err == nil || !strings.Contains(err.Error(), `object "fine.tgz" not found`) {
		t.Fatalf("fetch of a deleted object = %v, want not found", err)
	}
	apiRequests()

	// Without direct gets: the object store's own get.
	info, err := js.Stream(t.Context(), "OBJ_ARCHIVES")
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	f, _ = newTestFetcher(t, FetchConfig{Conn: fetchConn})
	got, err := fetchAll(t, f, big.entry("nats://ARCHIVES/big.tgz"))
	if err != nil || !bytes.Equal(got, big.data) {
		t.Fatalf("fetch without direct gets = %d bytes, %v", len(got), err)
	}
	if reqs := apiRequests(); !slices.ContainsFunc(reqs, func(s string) bool { return strings.HasPrefix(s, "$JS.API.CONSUMER.CREATE.") }) {
		t.Errorf("fetch without direct gets made the requests %q, want the object store's consumer", reqs)
	}
}

// TestFetchObjectDirectDamaged: an object whose chunks are missing, or
// do not match its digest, fails the download with what is wrong; it
// never passes as a shorter archive.
func TestFetchObjectDirectDamaged(t *testing.T) {
	_, nc, js, obs := archiveStore(t)
	a := buildArchive(t, "web", "1", map[string]string{"run.sh": strings.Repeat("echo hi\n", 500)})
	put := func(name string) *jetstream.ObjectInfo {
		t.Helper()
		info, err := obs.Put(t.Context(), jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: 64}}, bytes.NewReader(a.data))
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	stream, err := js.Stream(t.Context(), "OBJ_ARCHIVES")
	if err != nil {
		t.Fatal(err)
	}

	// A chunk in the middle deleted.
	holed := put("holed.tgz")
	msg, err := stream.GetLastMsgForSubject(t.Context(), "$O.ARCHIVES.C."+holed.NUID)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(t.Context(), msg.Sequence-1); err != nil {
		t.Fatal(err)
	}
	// The meta message of another object rewritten with a wrong digest.
	forged := put("forged.tgz")
	forged.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(make([]byte, 32))
	b, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), "$O.ARCHIVES.M."+base64.URLEncoding.EncodeToString([]byte("forged.tgz")), b); err != nil {
		t.Fatal(err)
	}

	f, _ := newTestFetcher(t, FetchConfig{Conn: nc, Retries: -1})
	for name, want := range map[string]string{
		"holed.tgz":  "object store returned", // the chunks after the hole come, the bytes are short
		"forged.tgz": "object's chunks do not match its digest",
	} {
		got, err := fetchAll(t, f, a.entry("nats://ARCHIVES/"+name))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fetch %s = %d bytes, %v, want an error saying %q", name, len(got), err, want)
		}
	}
}
