package command

import (
	"testing"
	"time"

	"github.com/mms-io/mms/watchers"
)

func TestTimeout(t *testing.T) {
	tests := []struct {
		set  watchers.Duration
		want time.Duration
		err  bool
	}{
		{set: 0, want: DefaultTimeout},
		{set: watchers.Duration(time.Second), want: time.Second},
		{set: watchers.Duration(MaxTimeout), want: MaxTimeout},
		{set: watchers.Duration(MaxTimeout + time.Second), want: MaxTimeout + time.Second, err: true},
	}
	for _, tt := range tests {
		got, err := Timeout(tt.set)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("Timeout(%v) = %v, %v; want %v, error %v", tt.set, got, err, tt.want, tt.err)
		}
	}
}
