package fleet_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/nodestatus"
	"github.com/mms-io/mms/nodestatus/nodestatustest"
	"github.com/mms-io/mms/packer"
	"github.com/mms-io/mms/spec"
)

// bench is a real embedded server with the spec and the status buckets.
type bench struct {
	t      *testing.T
	js     jetstream.JetStream
	specKV jetstream.KeyValue
	status jetstream.KeyValue
}

func newBench(t *testing.T) *bench {
	t.Helper()
	srv := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{t: t, js: js}
	if b.specKV, err = js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "MACHINES", History: 5}); err != nil {
		t.Fatal(err)
	}
	if b.status, err = js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: nodestatus.Bucket, History: 1, MaxValueSize: nodestatus.MaxDocumentSize}); err != nil {
		t.Fatal(err)
	}
	return b
}

// putDoc writes d under its identity's key.
func (b *bench) putDoc(d nodestatus.Document) {
	b.t.Helper()
	data, err := json.Marshal(d)
	if err != nil {
		b.t.Fatal(err)
	}
	b.putRaw(nodestatus.Key(d.Identity), data)
}

// putRaw writes data under key of the status bucket.
func (b *bench) putRaw(key string, data []byte) {
	b.t.Helper()
	if _, err := b.status.Put(b.t.Context(), key, data); err != nil {
		b.t.Fatal(err)
	}
}

// deleteDoc deletes the document of identity.
func (b *bench) deleteDoc(identity string) {
	b.t.Helper()
	if err := b.status.Delete(b.t.Context(), nodestatus.Key(identity)); err != nil {
		b.t.Fatal(err)
	}
}

// putSpec seals a spec in format f with serial and entries, signed by a
// fresh key, writes it to MACHINES/machines and returns it as Inspect
// reads it.
func (b *bench) putSpec(f packer.Format, serial uint64, entries ...spec.Machine) *packer.Opened {
	b.t.Helper()
	_, priv, err := packer.GenerateKey(rand.Reader)
	if err != nil {
		b.t.Fatal(err)
	}
	s := &spec.Spec{Machines: entries}
	if f == packer.FormatV2 {
		s.Serial, s.IssuedAt = serial, time.Now().UTC().Truncate(time.Second)
	}
	env, err := packer.Seal(f, s, priv)
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := b.specKV.Put(b.t.Context(), "machines", env); err != nil {
		b.t.Fatal(err)
	}
	op, err := packer.Inspect(env)
	if err != nil {
		b.t.Fatal(err)
	}
	return op
}

// sum is a checksum made from s.
func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// entry is a spec entry for machine name at the version called version.
func entry(name, version string) spec.Machine {
	return spec.Machine{Name: name, Source: "https://repo.example.net/" + name + "-" + version + ".tar.gz", Checksum: sum(name + version), VerifyChecksum: sum("sums " + name + version)}
}

// doc is the document of an agent that runs the v2 spec with serial
// (digest "d<serial>"), updated at updated, every 30s.
var doc = nodestatustest.Applied
