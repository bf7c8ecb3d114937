package spec

import (
	"errors"
	"strings"
	"testing"
)

// checkErrors fails unless err holds exactly the lines in want, each an
// ErrInvalid.
func checkErrors(t *testing.T, call string, err error, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s = %v, want nil", call, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s = nil, want errors:\n%s", call, strings.Join(want, "\n"))
	}
	if got, w := err.Error(), strings.Join(want, "\n"); got != w {
		t.Errorf("%s =\n%s\nwant\n%s", call, got, w)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%s, ErrInvalid) = false, want true", call)
	}
}

func TestFieldError(t *testing.T) {
	cause := errors.New("want 64 lowercase hex characters, got \"abc\"")
	tests := []struct {
		name string
		err  *FieldError
		want string
	}{
		{name: "entry and field", err: &FieldError{Entry: `machine[0] "web"`, Field: "checksum", Err: cause},
			want: `machine[0] "web": checksum: want 64 lowercase hex characters, got "abc"`},
		{name: "entry, line and no field", err: &FieldError{Entry: `machine[1] "web"`, Line: 7, Err: errors.New(`unknown field "chekcsum"`)},
			want: `machine[1] "web": line 7: unknown field "chekcsum"`},
		{name: "spec field", err: &FieldError{Field: "serial", Err: errors.New("must be at least 1")}, want: `serial: must be at least 1`},
		{name: "document", err: &FieldError{Line: 3, Err: errors.New("want a list")}, want: `line 3: want a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.err, ErrInvalid) || !errors.Is(tt.err, tt.err.Err) {
				t.Errorf("errors.Is(%v, ErrInvalid and its cause) = false, want true", tt.err)
			}
		})
	}
}

func TestQuoteCutsLongValues(t *testing.T) {
	if got, want := quote("a\nb"), `"a\nb"`; got != want {
		t.Errorf("quote(short) = %s, want %s", got, want)
	}
	long := strings.Repeat("x", 100)
	if got, want := quote(long), `"`+long[:64]+`"...`; got != want {
		t.Errorf("quote(long) = %s, want %s", got, want)
	}
}
