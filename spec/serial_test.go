package spec

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestSerialCeiling(t *testing.T) {
	day := uint64(MaxSerialAhead / time.Second)
	tests := []struct {
		name string
		now  time.Time
		want uint64
	}{
		{name: "now", now: time.Unix(1_767_225_600, 0), want: 1_767_225_600 + day},
		{name: "before 1970", now: time.Unix(-5, 0), want: day},
		{name: "far future does not wrap", now: time.Unix(math.MaxInt64, 0), want: math.MaxInt64 + day},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SerialCeiling(tt.now); got != tt.want {
				t.Errorf("SerialCeiling(%v) = %d, want %d", tt.now.Unix(), got, tt.want)
			}
		})
	}
}

func TestCheckSerial(t *testing.T) {
	now := time.Unix(1_767_225_600, 0)
	ceiling := SerialCeiling(now)
	tests := []struct {
		name    string
		serial  uint64
		wantErr string
	}{
		{name: "counter", serial: 3},
		{name: "the default (now)", serial: uint64(now.Unix())},
		{name: "at the ceiling", serial: ceiling},
		{name: "one above", serial: ceiling + 1, wantErr: "serial: too far ahead: 1767312001 is above 1767312000, the current Unix time plus 24h0m0s (milliseconds instead of seconds?)"},
		{name: "milliseconds", serial: uint64(now.UnixMilli()), wantErr: "1767225600000 is above"},
		{name: "2^64-1", serial: math.MaxUint64, wantErr: "18446744073709551615 is above"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSerial(tt.serial, now)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckSerial(%d) = %v, want nil", tt.serial, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrSerialAhead) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("CheckSerial(%d) = %v, want ErrSerialAhead containing %q", tt.serial, err, tt.wantErr)
			}
		})
	}
}

func TestResetHistoryIsV2Only(t *testing.T) {
	s := &Spec{ResetHistory: true, Machines: []Machine{}}
	err := s.Validate(ValidateOptions{Legacy: true})
	if err == nil || err.Error() != "reset_history: v2 only: v1 envelopes have no serial to reset" {
		t.Fatalf("Validate(legacy reset spec) = %v, want refused", err)
	}
	s = &Spec{Serial: 1, IssuedAt: time.Unix(1, 0), ResetHistory: true, Machines: []Machine{}}
	out, err := EncodeV2(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"serial":1,"issued_at":"1970-01-01T00:00:01Z","reset_history":true,"machines":[]}`; string(out) != want {
		t.Errorf("EncodeV2(reset spec) = %s, want %s", out, want)
	}
}
