package kvname

import (
	"regexp"
	"testing"
)

func TestBucketAndKey(t *testing.T) {
	// The patterns nats.go applies (jetstream: validBucketRe, validKeyRe
	// plus no leading or trailing dot), and no empty tokens.
	bucketRe := regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	keyRe := regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)
	for _, s := range []string{"", "MACHINES", "a_b-1", "a.b", "a..b", ".a", "a.", "a/b=c", "a b", "a*", "a>", "é", "a.b.c", "MACHINES_STATUS", "web1.example.net"} {
		if got, want := Bucket(s) == nil, bucketRe.MatchString(s); got != want {
			t.Errorf("Bucket(%q) ok = %v, want %v", s, got, want)
		}
		if got, want := Key(s) == nil, keyRe.MatchString(s); got != want {
			t.Errorf("Key(%q) ok = %v, want %v", s, got, want)
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, s := range []string{"machines", "a..b", "web1.example.net", ".x", "a>"} {
		f.Add(s)
	}
	keyRe := regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Key(s) == nil, keyRe.MatchString(s); got != want {
			t.Fatalf("Key(%q) ok = %v, want %v", s, got, want)
		}
	})
}
