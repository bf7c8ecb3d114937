package nodestatus

import (
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
	want     string // "" means: check only the prefix and the hash suffix
	prefix   string
}{
	{"host name", "web1", "web1", ""},
	{"fqdn keeps its dots", "web1.example.net", "web1.example.net", ""},
	{"allowed punctuation", "rack-1/node_2=a", "rack-1/node_2=a", ""},
	{"space", "web 1", "", "web_1-"},
	{"unicode", "nœud-été", "", "n_ud-_t_-"},
	{"emoji is one character", "db🙂", "", "db_-"},
	{"leading dot", ".hidden", "", "_hidden-"},
	{"trailing dot", "web1.example.net.", "", "web1.example.net_-"},
	{"double dot", "a..b", "", "a._b-"},
	{"only dots", "...", "", "_._-"},
	{"wildcards", "web.*.>", "", "web._._-"},
	{"empty", "", "", "_-"},
	{"invalid utf-8", "a\xffb", "", "a_b-"},
	{"too long", strings.Repeat("a", 300), "", strings.Repeat("a", maxKeyBase) + "-"},
}

func TestKey(t *testing.T) {
	for _, tt := range keyTests {
		t.Run(tt.name, func(t *testing.T) {
			got := Key(tt.identity)
			if why := checkKey(got); why != "" {
				t.Fatalf("Key(%q) = %q, which %s", tt.identity, got, why)
			}
			if tt.want != "" {
				if got != tt.want {
					t.Errorf("Key(%q) = %q, want %q", tt.identity, got, tt.want)
				}
				return
			}
			if !strings.HasPrefix(got, tt.prefix) || len(got) != len(tt.prefix)+8 {
				t.Errorf("Key(%q) = %q, want %q and 8 hex digits", tt.identity, got, tt.prefix)
			}
			if again := Key(tt.identity); again != got {
				t.Errorf("Key(%q) is not stable: %q then %q", tt.identity, got, again)
			}
		})
	}
}

func TestKeyKeepsMappedIdentitiesApart(t *testing.T) {
	pairs := [][2]string{
		{"web 1", "web_1"},
		{"web 1", "web\t1"},
		{"a..b", "a._b"},
		{strings.Repeat("a", 300), strings.Repeat("a", 301)},
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
		got := Key(identity)
		if why := checkKey(got); why != "" {
			t.Fatalf("Key(%q) = %q, which %s", identity, got, why)
		}
		if len(got) > maxKeyBase+9 {
			t.Fatalf("Key(%q) = %q: %d bytes, want at most %d", identity, got, len(got), maxKeyBase+9)
		}
		if checkKey(identity) == "" && len(identity) <= maxKeyBase && got != identity {
			t.Fatalf("Key(%q) = %q, want the identity itself (it is a valid key)", identity, got)
		}
	})
}
