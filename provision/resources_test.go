package provision_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/provision"
)

// actions lists what each outcome says, as "KIND NAME: ACTION".
func actions(outcomes []provision.Outcome) []string {
	var out []string
	for _, o := range outcomes {
		s := fmt.Sprintf("%s %s: %s", o.Resource.Kind, o.Resource.Name, o.Action)
		for _, c := range o.Changes {
			s += "; " + c.String()
		}
		for _, r := range o.Replicas {
			s += "; " + r
		}
		out = append(out, s)
	}
	return out
}

// fleet is the defaults with one governor and replicas.
func fleet(replicas int) provision.Fleet {
	f := provision.Defaults()
	f.Replicas = replicas
	f.Governors = []provision.Governor{{Name: "downloads", Limit: 10, Expire: 15 * time.Minute}}
	return f
}

func TestApplyCreatesOnceAndChecks(t *testing.T) {
	s := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	f := fleet(1)

	got, err := provision.Check(ctx, js, f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"spec bucket MACHINES: missing", "status bucket MACHINES_STATUS: missing", "events stream CHORIA_MACHINE: missing",
		"archives ARCHIVES: missing", "governor downloads: missing",
	}
	if diff := cmp.Diff(want, actions(got)); diff != "" {
		t.Errorf("Check() on an empty server (-want +got):\n%s", diff)
	}

	got, err = provision.Apply(ctx, js, f)
	if err != nil {
		t.Fatalf("Apply() = %v", err)
	}
	for i := range want {
		want[i] = strings.Replace(want[i], "missing", "created", 1)
	}
	if diff := cmp.Diff(want, actions(got)); diff != "" {
		t.Errorf("first Apply() (-want +got):\n%s", diff)
	}
	if s := provision.Summary(got); s != "5 resources: 5 created" {
		t.Errorf("Summary() = %q", s)
	}

	// What each stream holds is what the fleet says.
	info := func(stream string) jetstream.StreamConfig {
		t.Helper()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config
	}
	if c := info("KV_MACHINES"); c.MaxBytes != provision.DefaultSpecMaxBytes || c.MaxMsgsPerSubject != 5 || c.MaxMsgSize != 1<<20 {
		t.Errorf("KV_MACHINES = max bytes %d, history %d, max msg size %d", c.MaxBytes, c.MaxMsgsPerSubject, c.MaxMsgSize)
	}
	if c := info("CHORIA_MACHINE"); c.MaxAge != 24*time.Hour || c.MaxBytes != provision.DefaultEventsMaxBytes || !slices.Equal(c.Subjects, []string{"choria.machine.>"}) {
		t.Errorf("CHORIA_MACHINE = max age %v, max bytes %d, subjects %v", c.MaxAge, c.MaxBytes, c.Subjects)
	}
	if c := info("MMS_GOVERNOR_downloads"); c.MaxMsgs != 10 || c.MaxAge != 15*time.Minute {
		t.Errorf("governor = max msgs %d, max age %v", c.MaxMsgs, c.MaxAge)
	}
	// The stores are usable as what they are.
	if _, err := js.ObjectStore(ctx, "ARCHIVES"); err != nil {
		t.Errorf("ObjectStore(ARCHIVES) = %v", err)
	}
	if _, err := js.KeyValue(ctx, "MACHINES_STATUS"); err != nil {
		t.Errorf("KeyValue(MACHINES_STATUS) = %v", err)
	}

	got, err = provision.Apply(ctx, js, f)
	if err != nil {
		t.Fatal(err)
	}
	if s := provision.Summary(got); s != "5 resources: 5 unchanged" {
		t.Errorf("second Apply() = %q: %v", s, actions(got))
	}
	got, err = provision.Check(ctx, js, f)
	if err != nil {
		t.Fatal(err)
	}
	if s := provision.Summary(got); s != "5 resources: 5 ok" {
		t.Errorf("Check() after Apply() = %q: %v", s, actions(got))
	}
}

// TestApplyRepairsOldSetups: buckets made the way mms did before `mms
// init` (put --create, status --create, archive create --upload: no
// limits) and a stream made by hand are found different and brought to
// the fleet's settings.
func TestApplyRepairsOldSetups(t *testing.T) {
	s := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "MACHINES", History: 5, MaxValueSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "ARCHIVES"}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "CHORIA_MACHINE", Subjects: []string{"choria.machine.>"}}); err != nil {
		t.Fatal(err)
	}
	f := provision.Defaults()
	f.Replicas = 1
	got, err := provision.Check(ctx, js, f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"spec bucket MACHINES: differs; max bytes none → 64MiB",
		"status bucket MACHINES_STATUS: missing",
		"events stream CHORIA_MACHINE: differs; max bytes none → 1GiB; max age none → 24h0m0s",
		"archives ARCHIVES: differs; max bytes none → 2GiB",
	}
	if diff := cmp.Diff(want, actions(got)); diff != "" {
		t.Errorf("Check() (-want +got):\n%s", diff)
	}
	got, err = provision.Apply(ctx, js, f)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []string{"updated", "created", "updated", "updated"} {
		want[i] = strings.NewReplacer("differs", r, "missing", r).Replace(want[i])
	}
	if diff := cmp.Diff(want, actions(got)); diff != "" {
		t.Errorf("Apply() (-want +got):\n%s", diff)
	}
	if got, _ := provision.Check(ctx, js, f); provision.Summary(got) != "4 resources: 4 ok" {
		t.Errorf("Check() after Apply() = %v", actions(got))
	}
}

// TestApplyClusterThreeReplicas runs on a real three-server cluster: a
// status bucket made with one replica (as `mms status --create` did) is
// scaled to three, everything else is created with three, Check then
// finds every replica current; with one server down it names the
// offline replicas.
func TestApplyClusterThreeReplicas(t *testing.T) {
	servers := natstest.RunCluster(t, 3)
	nc := natstest.Connect(t, servers[0])
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "MACHINES_STATUS", History: 1, MaxValueSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	replicas, err := provision.Replicas(nc, 0)
	if err != nil || replicas != 3 {
		t.Fatalf("Replicas(cluster, 0) = %d, %v; want 3", replicas, err)
	}
	f := fleet(replicas)
	natstest.Eventually(t, time.Minute, func() error {
		_, err := provision.Apply(ctx, js, f) // a new cluster may still be placing
		return err
	})
	natstest.Eventually(t, time.Minute, func() error {
		got, err := provision.Check(ctx, js, f)
		if err != nil {
			return err
		}
		if s := provision.Summary(got); s != "5 resources: 5 ok" {
			return fmt.Errorf("Check() = %v", actions(got))
		}
		return nil
	})
	for _, stream := range []string{"KV_MACHINES", "KV_MACHINES_STATUS", "CHORIA_MACHINE", "OBJ_ARCHIVES", "MMS_GOVERNOR_downloads"} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		si := st.CachedInfo()
		if si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
			t.Errorf("%s: replicas %d, cluster %+v; want 3 replicas placed", stream, si.Config.Replicas, si.Cluster)
		}
	}

	down := servers[2]
	down.Shutdown()
	down.WaitForShutdown()
	natstest.Eventually(t, time.Minute, func() error {
		got, err := provision.Check(ctx, js, f)
		if err != nil {
			return err
		}
		for _, o := range got {
			if o.Action != provision.Differs || !slices.Contains(o.Replicas, "replica on "+down.Name()+" offline") {
				return fmt.Errorf("Check() with %s down = %v", down.Name(), actions(got))
			}
		}
		return nil
	})
}

func TestReplicasRefusedOnSingleServer(t *testing.T) {
	nc := natstest.Connect(t, natstest.RunJetStream(t))
	if n, err := provision.Replicas(nc, 0); n != 1 || err != nil {
		t.Errorf("Replicas(single, 0) = %d, %v; want 1", n, err)
	}
	_, err := provision.Replicas(nc, 3)
	if !errors.Is(err, provision.ErrNotClustered) || !strings.Contains(err.Error(), "3 replicas: the NATS server is not part of a JetStream cluster") || !strings.Contains(err.Error(), "use --replicas 1") {
		t.Errorf("Replicas(single, 3) = %v, want a refusal naming the server and the fix", err)
	}
	if _, err := provision.Replicas(nc, 6); err == nil {
		t.Errorf("Replicas(single, 6) = nil, want an error")
	}
}

func TestFleetValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*provision.Fleet)
		want string
	}{
		{"no replicas", func(f *provision.Fleet) { f.Replicas = 0 }, "replicas 0: want 1 to 5"},
		{"bad bucket", func(f *provision.Fleet) { f.SpecBucket = "A.B" }, `spec bucket "A.B"`},
		{"spec is status", func(f *provision.Fleet) { f.SpecBucket = "MACHINES_STATUS" }, "that is the status bucket"},
		{"tiny status", func(f *provision.Fleet) { f.StatusMaxBytes = 1000 }, "status max bytes 1000: want at least 1MiB"},
		{"spec too small for history", func(f *provision.Fleet) { f.SpecMaxBytes = 2 << 20 }, "holds fewer than 5 revisions"},
		{"archive twice", func(f *provision.Fleet) { f.ArchiveBuckets = []string{"A", "A"} }, `archive bucket "A": given twice`},
		{"governor without slots", func(f *provision.Fleet) {
			f.Governors = []provision.Governor{{Name: "g", Limit: 0, Expire: time.Minute}}
		}, `governor "g": limit 0 must be at least 1`},
		{"bad site", func(f *provision.Fleet) { f.Sites = []string{"a.b"} }, `site "a.b": character '.'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fleet(1)
			tt.edit(&f)
			if err := f.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
			if _, err := f.Resources(); err == nil {
				t.Errorf("Resources() = nil error for an invalid fleet")
			}
		})
	}
	if err := fleet(1).Validate(); err != nil {
		t.Errorf("Validate(defaults) = %v", err)
	}
	if err := provision.Embedded("").Validate(); err != nil {
		t.Errorf("Validate(Embedded) = %v", err)
	}
}

func TestSiteFleetMirrorsTheHub(t *testing.T) {
	hub := fleet(3)
	hub.Sites = []string{"paris", "berlin"}
	rs, err := hub.Resources()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Stream+": "+r.Want.String())
	}
	want := []string{
		"KV_MACHINES: history 5, values ≤ 1MiB, ≤ 64MiB in all",
		"KV_MACHINES_STATUS: history 1, values ≤ 1MiB, ≤ 256MiB in all, sources KV_MACHINES_STATUS in domain berlin, KV_MACHINES_STATUS in domain paris",
		"CHORIA_MACHINE: ≤ 1GiB in all, kept 24h0m0s, sources CHORIA_MACHINE in domain berlin, CHORIA_MACHINE in domain paris",
		"OBJ_ARCHIVES: ≤ 2GiB in all",
		"MMS_GOVERNOR_downloads: 10 slots, no size limit, slots freed after 15m0s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hub resources (-want +got):\n%s", diff)
	}
	site := fleet(3).Site("hub")
	rs, err = site.Resources()
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%s R%d: %s", r.Stream, r.Want.Replicas, r.Want.String()))
	}
	want = []string{
		"KV_MACHINES R1: history 5, values ≤ 1MiB, ≤ 64MiB in all, mirror of KV_MACHINES in domain hub",
		"KV_MACHINES_STATUS R1: history 1, values ≤ 1MiB, ≤ 256MiB in all",
		"CHORIA_MACHINE R1: ≤ 1GiB in all, kept 24h0m0s",
		"OBJ_ARCHIVES R1: ≤ 2GiB in all, mirror of OBJ_ARCHIVES in domain hub",
		"MMS_GOVERNOR_downloads R1: 10 slots, no size limit, slots freed after 15m0s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("site resources (-want +got):\n%s", diff)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"1048576", 1 << 20, false},
		{"64MiB", 64 << 20, false},
		{"64M", 64 << 20, false},
		{"1GiB", 1 << 30, false},
		{"10GB", 10e9, false},
		{"512 KiB", 512 << 10, false},
		{"-1", -1, false},
		{"none", -1, false},
		{"", 0, true},
		{"1.5GiB", 0, true},
		{"-2", 0, true},
		{"99999999999TiB", 0, true},
		{"MiB", 0, true},
	}
	for _, tt := range tests {
		got, err := provision.ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (error %v)", tt.in, got, err, tt.want, tt.err)
		}
		if err == nil && got > 0 {
			if back, err := provision.ParseSize(provision.FormatSize(got)); err != nil || back != got {
				t.Errorf("ParseSize(FormatSize(%d) = %q) = %d, %v", got, provision.FormatSize(got), back, err)
			}
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1048576", "64MiB", "64M", "1GiB", "10GB", "512 KiB", "-1", "none", "", "1.5GiB", "-2", "99999999999TiB", "MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := provision.ParseSize(s)
		if err != nil {
			return
		}
		if n < -1 {
			t.Fatalf("ParseSize(%q) = %d, below -1", s, n)
		}
		if n > 0 {
			if back, err := provision.ParseSize(provision.FormatSize(n)); err != nil || back != n {
				t.Fatalf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
			}
		}
	})
}
