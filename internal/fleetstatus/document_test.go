package fleetstatus

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const goodDocument = `{"identity":"web1","agent_version":"dev","started_at":"2026-01-02T03:04:05Z",
"updated_at":"2026-01-02T03:05:05Z","heartbeat":"30s","spec":{"serial":7,"digest":"d","format":"v2","stale":false,"error":""},
"machines":[{"name":"web","version":"1.0.0","state":"RUN","path":"/m/web","last_outcome":"installed","last_error":""}],
"nats":{"connected":true,"reconnects":0,"disconnects":0},"last_error":"","from_the_future":1}`

func TestParseDocument(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr []string
	}{
		{"good, unknown fields ignored", goodDocument, nil},
		{"minimal", `{"identity":"a","updated_at":"2026-01-02T03:04:05Z"}`, nil},
		{"not json", `nope`, []string{"decode status document"}},
		{"wrong type", `{"identity":5}`, []string{"decode status document"}},
		{"every missing field", `{"heartbeat":"soon"}`, []string{"identity is missing", "updated_at is missing", `heartbeat "soon" is not a positive duration`}},
		{"negative heartbeat", `{"identity":"a","updated_at":"2026-01-02T03:04:05Z","heartbeat":"-1s"}`, []string{`heartbeat "-1s"`}},
		{"too big", `{"identity":"` + strings.Repeat("a", MaxDocumentSize) + `"}`, []string{"more than the"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDocument([]byte(tt.in))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseDocument() = %v, want no error", err)
				}
				if d.Machines == nil {
					t.Errorf("ParseDocument().Machines = nil, want an empty list")
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseDocument() = %+v, want an error", d)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseDocument() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestParseDocumentFields(t *testing.T) {
	d, err := ParseDocument([]byte(goodDocument))
	if err != nil {
		t.Fatal(err)
	}
	if d.Identity != "web1" || d.Spec.Serial != 7 || len(d.Machines) != 1 || d.Machines[0].State != "RUN" || !d.NATS.Connected {
		t.Errorf("ParseDocument() = %+v, want the fields of the document", d)
	}
	if got := d.HeartbeatInterval(); got != 30*time.Second {
		t.Errorf("HeartbeatInterval() = %v, want 30s", got)
	}
}

// The JSON shape is stable: every documented field is present even when
// empty.
func TestDocumentShape(t *testing.T) {
	b, err := json.Marshal(Document{Machines: []Machine{{Name: "m"}}})
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"identity", "agent_version", "started_at", "updated_at", "heartbeat", "spec", "machines", "nats", "last_error"} {
		if _, ok := top[k]; !ok {
			t.Errorf("document JSON lacks %q: %s", k, b)
		}
	}
	var spec, machines map[string]json.RawMessage
	var list []map[string]json.RawMessage
	_ = json.Unmarshal(top["spec"], &spec)
	_ = json.Unmarshal(top["machines"], &list)
	machines = list[0]
	for _, k := range []string{"serial", "digest", "format", "stale", "error"} {
		if _, ok := spec[k]; !ok {
			t.Errorf("spec JSON lacks %q: %s", k, top["spec"])
		}
	}
	for _, k := range []string{"name", "version", "state", "path", "last_outcome", "last_error"} {
		if _, ok := machines[k]; !ok {
			t.Errorf("machine JSON lacks %q: %s", k, top["machines"])
		}
	}
}

func FuzzParseDocument(f *testing.F) {
	f.Add([]byte(goodDocument))
	f.Add([]byte(`{"identity":"a","updated_at":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"heartbeat":"soon"}`))
	f.Add([]byte(`{"identity":"a","updated_at":"2026-01-02T03:04:05Z","machines":null,"spec":{"serial":-1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDocument(data)
		if err != nil {
			return
		}
		if d.Identity == "" || d.UpdatedAt.IsZero() || d.Machines == nil {
			t.Fatalf("ParseDocument(%q) = %+v without error, want identity, updated_at and machines", data, d)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", d, err)
		}
		if _, err := ParseDocument(b); err != nil {
			t.Fatalf("ParseDocument(re-encoded %s) = %v, want no error", b, err)
		}
	})
}
