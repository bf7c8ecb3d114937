package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/packer"
)

// SpecState says what a reader found at the live spec's key.
type SpecState string

// The states of the live spec.
const (
	// SpecLive: an envelope that decodes (its signature not verified).
	SpecLive SpecState = "live"
	// SpecNone: no spec is published (no bucket, no key, or a deleted key).
	SpecNone SpecState = "none"
	// SpecUnreadable: the bucket or the key cannot be read.
	SpecUnreadable SpecState = "unreadable"
	// SpecUndecodable: the value is not a spec envelope.
	SpecUndecodable SpecState = "undecodable"
)

// Spec is the live spec as the fleet view reads it: decoded without
// verifying its signature, to compare the nodes with it, never to trust it.
type Spec struct {
	// Bucket and Key are where the spec lives.
	Bucket string
	Key    string
	// State says what was found there.
	State SpecState
	// Revision is the KV revision of the value read (0 when none).
	Revision uint64
	// Opened is the decoded envelope when State is SpecLive.
	Opened *packer.Opened
	// Err says why there is no spec to compare with (any state but
	// SpecLive): "no bucket MACHINES", the read or decode error.
	Err error
}

// MarshalJSON encodes the spec for a page: where it is, its state and
// revision, what it is (format, serial, digest, entries) when it decodes,
// why there is none when it does not, and its line for people.
func (s Spec) MarshalJSON() ([]byte, error) {
	out := struct {
		Bucket   string    `json:"bucket"`
		Key      string    `json:"key"`
		State    SpecState `json:"state"`
		Revision uint64    `json:"revision,omitempty"`
		Format   string    `json:"format,omitempty"`
		Serial   uint64    `json:"serial,omitempty"`
		Digest   string    `json:"digest,omitempty"`
		Machines []string  `json:"machines,omitempty"`
		Error    string    `json:"error,omitempty"`
		Line     string    `json:"line"`
	}{Bucket: s.Bucket, Key: s.Key, State: s.State, Revision: s.Revision, Line: s.Line()}
	if op := s.Opened; op != nil {
		out.Format, out.Serial, out.Digest = op.Format.String(), op.Spec.Serial, op.Digest
		for _, m := range op.Spec.Machines {
			out.Machines = append(out.Machines, m.Name)
		}
	}
	if s.Err != nil {
		out.Error = s.Err.Error()
	}
	return json.Marshal(out)
}

// Where names the spec's key: "MACHINES/machines".
func (s Spec) Where() string { return s.Bucket + "/" + s.Key }

// Line describes the spec in one line for people: "spec MACHINES/machines
// (revision 3): v2 serial 17, 1 machine (signature not verified here)", or
// why there is none to compare the nodes with.
func (s Spec) Line() string {
	switch s.State {
	case SpecLive:
		op := s.Opened
		desc := fmt.Sprintf("%s serial %d", op.Format, op.Spec.Serial)
		if op.Format == packer.FormatV1 {
			desc = fmt.Sprintf("v1 digest %.12s", op.Digest)
		}
		n := len(op.Spec.Machines)
		return fmt.Sprintf("spec %s (revision %d): %s, %d machine%s (signature not verified here)", s.Where(), s.Revision, desc, n, plural(n))
	case SpecNone:
		if s.Err != nil {
			return fmt.Sprintf("spec %s: none published yet (%v)", s.Where(), s.Err)
		}
		return fmt.Sprintf("spec %s: none published yet", s.Where())
	case SpecUndecodable:
		return fmt.Sprintf("spec %s (revision %d): cannot decode it (%v); not checking who is behind", s.Where(), s.Revision, s.Err)
	}
	return fmt.Sprintf("spec %s: cannot read it (%v); not checking who is behind", s.Where(), s.Err)
}

// Label names the live spec as a node's applied spec is named: "serial
// 17", or "v1 0123456789ab"; "" when there is none.
func (s Spec) Label() string {
	if s.State != SpecLive {
		return ""
	}
	if s.Opened.Format == packer.FormatV1 {
		return "v1 " + short(s.Opened.Digest)
	}
	return fmt.Sprintf("serial %d", s.Opened.Spec.Serial)
}

// apply records one entry of the spec key: a put decodes, a delete or a
// purge leaves no spec.
func (s *Spec) apply(e jetstream.KeyValueEntry) {
	s.Revision, s.Opened, s.Err = e.Revision(), nil, nil
	if e.Operation() != jetstream.KeyValuePut {
		s.State = SpecNone
		return
	}
	op, err := packer.Inspect(e.Value())
	if err != nil {
		s.State, s.Err = SpecUndecodable, err
		return
	}
	s.State, s.Opened = SpecLive, op
}

// openSpec binds the spec bucket and says, in s, why it cannot be read
// when it cannot.
func openSpec(ctx context.Context, js jetstream.JetStream, s *Spec) (jetstream.KeyValue, bool) {
	kv, err := js.KeyValue(ctx, s.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		s.State, s.Err = SpecNone, fmt.Errorf("no bucket %s", s.Bucket)
		return nil, false
	case err != nil:
		s.State, s.Err = SpecUnreadable, err
		return nil, false
	}
	return kv, true
}
