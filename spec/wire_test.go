package spec

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestWireFieldsCoverMachine fails when a field is added to Machine but not
// to the wire description, or the description names a field twice.
func TestWireFieldsCoverMachine(t *testing.T) {
	var m Machine
	covered := map[uintptr]string{}
	base := reflect.ValueOf(&m).Pointer()
	for _, f := range machineFields {
		off := reflect.ValueOf(f.ptr(&m)).Pointer() - base
		if prev, dup := covered[off]; dup {
			t.Errorf("wire fields %q and %q point at the same Machine field", prev, f.key)
		}
		covered[off] = f.key
	}
	typ := reflect.TypeFor[Machine]()
	for i := range typ.NumField() {
		if _, ok := covered[typ.Field(i).Offset]; !ok {
			t.Errorf("Machine.%s has no wire field in machineFields", typ.Field(i).Name)
		}
	}
}

func TestEncodeV2RoundTrip(t *testing.T) {
	s := &Spec{
		Serial:   42,
		IssuedAt: time.Date(2026, 12, 1, 10, 0, 0, 5, time.FixedZone("x", 3600)),
		Expires:  time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC),
		Machines: []Machine{
			{Name: "web", Source: "https://h/w.tgz", Checksum: "a", VerifyChecksum: "b", Match: "a && b < c", Size: 7, Auth: "reader"},
			{Name: "db", Source: "nats://A/db.tgz", Checksum: "c", VerifyChecksum: "d", Verify: "SHA256SUMS", Governor: "g"},
		},
	}
	out, err := EncodeV2(s)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"serial":42,"issued_at":"2026-12-01T09:00:00.000000005Z","expires":"2026-12-02T10:00:00Z","machines":[` +
		`{"name":"web","source":"https://h/w.tgz","checksum":"a","verify_checksum":"b","match":"a && b < c","size":7,"auth":"reader"},` +
		`{"name":"db","source":"nats://A/db.tgz","checksum":"c","verify_checksum":"d","verify":"SHA256SUMS","governor":"g"}]}`
	if string(out) != want {
		t.Fatalf("EncodeV2() =\n%s\nwant\n%s", out, want)
	}
	back, err := DecodeV2(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s.Machines, back.Machines); diff != "" || !back.IssuedAt.Equal(s.IssuedAt) || !back.Expires.Equal(s.Expires) || back.Serial != s.Serial {
		t.Errorf("DecodeV2(EncodeV2(s)) differs (-want +got):\n%s", diff)
	}
}

func TestEncodeV1ChoriaOrder(t *testing.T) {
	out, err := EncodeV1([]Machine{{Name: "facts", Source: "https://h/f.tgz", Checksum: "a", VerifyChecksum: "b", Verify: "SHA256SUMS", Match: "x", Username: "u", Password: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	const want = `[{"name":"facts","source":"https://h/f.tgz","checksum":"a","verify_checksum":"b","verify":"SHA256SUMS","match":"x","username":"u","password":"p"}]`
	if string(out) != want {
		t.Errorf("EncodeV1() = %s, want %s", out, want)
	}
	if _, err := DecodeV1(out); err != nil {
		t.Errorf("DecodeV1(EncodeV1()) = %v", err)
	}
	if _, err := EncodeV1([]Machine{{Name: "x", Auth: "a"}}); err == nil || !strings.Contains(err.Error(), "auth is v2 only") {
		t.Errorf("EncodeV1(entry with auth) err = %v, want a refusal naming the v2 fields", err)
	}
}

func TestMachineJSONStrict(t *testing.T) {
	var m Machine
	if err := m.UnmarshalJSON([]byte(`{"name":"web","chekcsum":"x"}`)); err == nil || !strings.Contains(err.Error(), `unknown field "chekcsum"`) {
		t.Errorf("UnmarshalJSON(typo) err = %v, want unknown field", err)
	}
	in := Machine{Name: "web", Source: "s", Checksum: "c", VerifyChecksum: "v", Username: "u"}
	b, err := in.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var out Machine
	if err := out.UnmarshalJSON(b); err != nil || out != in {
		t.Errorf("round trip = %+v, %v; want %+v", out, err, in)
	}
}
