package spec

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxSerialAhead is how far a spec serial may be ahead of the current Unix
// time in seconds. `mms pack` uses the current Unix time as the default
// serial, so a serial beyond it is a mistake (milliseconds instead of
// seconds, a stray digit, 2^64-1) or an attack: once a node accepted it,
// the node would ignore every spec with a lower serial. `mms pack`, `mms
// put` and the agent all refuse a serial above [SerialCeiling].
//
// The ceiling is also the maximum step over the last accepted serial: a
// node accepts any serial above the last one up to the ceiling, and no
// more. A fixed step limit is deliberately not applied on top of it: it
// would refuse the legitimate move from counter serials (1, 2, 3) to the
// default time-based ones, and within the ceiling a bad serial locks no one
// out for longer than MaxSerialAhead (pack the next spec with --serial
// above it).
const MaxSerialAhead = 24 * time.Hour

// ErrSerialAhead is wrapped by the error [CheckSerial] returns for a serial
// above [SerialCeiling].
var ErrSerialAhead = errors.New("too far ahead")

// SerialCeiling returns the highest serial acceptable at now: the Unix time
// in seconds plus [MaxSerialAhead]. It never overflows: a clock before 1970
// gives MaxSerialAhead in seconds.
func SerialCeiling(now time.Time) uint64 {
	sec := now.Unix()
	if sec < 0 {
		sec = 0
	}
	ahead := uint64(MaxSerialAhead / time.Second)
	if uint64(sec) > math.MaxUint64-ahead {
		return math.MaxUint64
	}
	return uint64(sec) + ahead
}

// CheckSerial returns an error wrapping [ErrSerialAhead] (and [ErrInvalid])
// when serial is above [SerialCeiling] at now. The message names the
// ceiling and the likely cause.
func CheckSerial(serial uint64, now time.Time) error {
	ceiling := SerialCeiling(now)
	if serial <= ceiling {
		return nil
	}
	return &FieldError{Field: "serial", Err: fmt.Errorf("%w: %d is above %d, the current Unix time plus %s (milliseconds instead of seconds?); agents refuse it, since accepting it would make them ignore every lower serial",
		ErrSerialAhead, serial, ceiling, MaxSerialAhead)}
}
