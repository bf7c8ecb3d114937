package fdlimit

import (
	"runtime"
	"testing"
)

func TestRaise(t *testing.T) {
	hard, err := Raise(0)
	if err != nil {
		t.Fatal(err)
	}
	if hard <= 0 {
		t.Fatalf("Raise(0) = %d, want the hard limit", hard)
	}
	if got, err := Raise(hard / 2); err != nil || got < hard/2 {
		t.Errorf("Raise(%d) = %d, %v; want at least that", hard/2, got, err)
	}
	if runtime.GOOS == "linux" {
		if got, err := Raise(hard); err != nil || got != hard {
			t.Errorf("Raise(%d) = %d, %v; want the hard limit", hard, got, err)
		}
	}
}
