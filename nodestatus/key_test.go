package nodestatus

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
)

// kvKey is what nats.go accepts as a KV key (plus no empty subject token).
var kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// checkKey returns why k is not a usable KV key, or "".
func checkKey(k string) string {
	switch {
	case !kvKey.MatchString(k):
		return "has a character outside [-/_=.a-zA-Z0-9]"
	case strings.HasPrefix(k, "."), strings.HasSuffix(k, "."):
		return "starts or ends with '.'"
	case strings.Contains(k, ".."):
		return "has an empty token"
	}
	return ""
}

var keyTests = []struct {
	name     string
	identity string
	want     string
}{
	{"host name", "web1", "web1"},
	{"fqdn keeps its dots", "web1.example.net", "web1.example.net"},
	{"allowed punctuation", "rack-1/node_2", "rack-1/node_2"},
	{"the escape character", "a=b", "a=3Db"},
	{"space", "web 1", "web=201"},
	{"unicode", "nœud-été", "n=C5=93ud-=C3=A9t=C3=A9"},
	{"emoji", "db🙂", "db=F0=9F=99=82"},
	{"leading dot", ".hidden", "=2Ehidden"},
	{"trailing dot", "web1.example.net.", "web1.example.net=2E"},
	{"double dot", "a..b", "a.=2Eb"},
	{"only dots", "...", "=2E.=2E"},
	{"one dot", ".", "=2E"},
	{"wildcards", "web.*.>", "web.=2A.=3E"},
	{"invalid utf-8", "a\xffb", "a=FFb"},
	{"looks escaped", "=2E", "=3D2E"},
	{"longest", strings.Repeat("é", MaxIdentity/2), strings.Repeat("=C3=A9", MaxIdentity/2)},
}

func TestKey(t *testing.T) {
	for _, tt := range keyTests {
		t.Run(tt.name, func(t *testing.T) {
			got := Key(tt.identity)
			if why := checkKey(got); why != "" {
				t.Fatalf("Key(%q) = %q, which %s", tt.identity, got, why)
			}
			if got != tt.want {
				t.Errorf("Key(%q) = %q, want %q", tt.identity, got, tt.want)
			}
			back, err := IdentityOf(got)
			if err != nil || back != tt.identity {
				t.Errorf("IdentityOf(%q) = %q, %v; want %q", got, back, err, tt.identity)
			}
		})
	}
}

// Keys that Key never returns belong to no identity: a document under
// such a key speaks for nobody.
func TestIdentityOfRefusesOtherKeys(t *testing.T) {
	for _, key := range []string{
		"",
		"=41",                              // 'A' needs no escape
		"web=2e1",                          // lower-case hex
		"web=2",                            // a short escape
		"web=",                             // an escape without digits
		"a=2Eb",                            // a dot that needs no escape
		"web=ZZ",                           // not hex
		strings.Repeat("a", MaxIdentity+1), // too long
	} {
		if id, err := IdentityOf(key); !errors.Is(err, ErrNotStatusKey) {
			t.Errorf("IdentityOf(%q) = %q, %v; want an error wrapping ErrNotStatusKey", key, id, err)
		}
	}
}

func TestKeyKeepsIdentitiesApart(t *testing.T) {
	pairs := [][2]string{
		{"web 1", "web_1"},
		{"web 1", "web\t1"},
		{"a..b", "a._b"},
		{"a=20b", "a b"},
	}
	for _, p := range pairs {
		if Key(p[0]) == Key(p[1]) {
			t.Errorf("Key(%q) = Key(%q) = %q, want different keys", p[0], p[1], Key(p[0]))
		}
	}
}

// The server and nats.go accept every derived key.
func TestKeyAcceptedByKV(t *testing.T) {
	srv := natstest.RunJetStream(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), testBucketConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range keyTests {
		if _, err := kv.Put(t.Context(), Key(tt.identity), []byte(tt.identity)); err != nil {
			t.Errorf("Put(Key(%q) = %q) = %v", tt.identity, Key(tt.identity), err)
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, tt := range keyTests {
		f.Add(tt.identity)
	}
	f.Fuzz(func(t *testing.T, identity string) {
		if identity == "" || len(identity) > MaxIdentity {
			return
		}
		got := Key(identity)
		if why := checkKey(got); why != "" {
			t.Fatalf("Key(%q) = %q, which %s", identity, got, why)
		}
		if len(got) > 3*len(identity) {
			t.Fatalf("Key(%q) = %q: %d bytes, want at most three per byte", identity, got, len(got))
		}
		if checkKey(identity) == "" && !strings.Contains(identity, "=") && got != identity {
			t.Fatalf("Key(%q) = %q, want the identity itself (it is a valid key)", identity, got)
		}
		if back, err := IdentityOf(got); err != nil || back != identity {
			t.Fatalf("IdentityOf(Key(%q) = %q) = %q, %v", identity, got, back, err)
		}
	})
}

// FuzzIdentityOf: whatever key a node writes under, the identity read
// from it maps back to exactly that key.
func FuzzIdentityOf(f *testing.F) {
	for _, tt := range keyTests {
		f.Add(tt.want)
	}
	f.Add("=41")
	f.Fuzz(func(t *testing.T, key string) {
		id, err := IdentityOf(key)
		if err != nil {
			return
		}
		if Key(id) != key {
			t.Fatalf("IdentityOf(%q) = %q, whose key is %q", key, id, Key(id))
		}
	})
}
