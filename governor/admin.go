package governor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxGovernorDuplicates caps the stream's duplicate window (JetStream's
// default); it must not exceed the expiry.
const maxGovernorDuplicates = 2 * time.Minute

// Info describes a governor.
type Info struct {
	// Name is the governor's name (without the stream prefix).
	Name string `json:"name"`
	// Limit is how many holders it allows at once.
	Limit int64 `json:"limit"`
	// InUse is how many slots are taken now.
	InUse uint64 `json:"in_use"`
	// Expire is how long a slot is held at most: a crashed holder's slot
	// frees after it.
	Expire time.Duration `json:"expire"`
	// Replicas is the stream's replica count.
	Replicas int `json:"replicas"`
}

// infoOf turns a governor stream's info into an Info.
func infoOf(si *jetstream.StreamInfo) Info {
	return Info{
		Name:     strings.TrimPrefix(si.Config.Name, StreamPrefix),
		Limit:    si.Config.MaxMsgs,
		InUse:    si.State.Msgs,
		Expire:   si.Config.MaxAge,
		Replicas: si.Config.Replicas,
	}
}

// Config is the stream of governor name with limit slots, each freed
// after expire at the latest, kept on replicas servers: the one
// description of a governor's stream, for [Add] and for `mms init`. limit
// must be at least 1 and expire positive: without an expiry a crashed
// holder would keep its slot forever.
func Config(name string, limit int64, expire time.Duration, replicas int) (jetstream.StreamConfig, error) {
	var errs []error
	if err := checkGovernorName(name); err != nil {
		errs = append(errs, err)
	}
	if limit < 1 {
		errs = append(errs, fmt.Errorf("limit %d must be at least 1", limit))
	}
	if expire <= 0 {
		errs = append(errs, fmt.Errorf("expiry %v must be positive: it frees the slots of crashed holders", expire))
	}
	if replicas < 1 {
		errs = append(errs, fmt.Errorf("replicas %d must be at least 1", replicas))
	}
	if err := errors.Join(errs...); err != nil {
		return jetstream.StreamConfig{}, err
	}
	return jetstream.StreamConfig{
		Name:        Stream(name),
		Description: fmt.Sprintf("mms governor %s: at most %d concurrent holders", name, limit),
		Subjects:    []string{Subject(name)},
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     limit,
		Discard:     jetstream.DiscardNew,
		MaxAge:      expire,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  min(expire, maxGovernorDuplicates),
	}, nil
}

// Add creates governor name (see [Config]), or changes the limit, expiry
// and replicas of an existing one.
func Add(ctx context.Context, js jetstream.JetStream, name string, limit int64, expire time.Duration, replicas int) (Info, error) {
	cfg, err := Config(name, limit, expire, replicas)
	if err != nil {
		return Info{}, fmt.Errorf("add governor: %w", err)
	}
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return Info{}, fmt.Errorf("add governor %q: %w", name, err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("add governor %q: read it back: %w", name, err)
	}
	return infoOf(si), nil
}

// Get returns governor name; a missing one wraps [ErrNotFound].
func Get(ctx context.Context, js jetstream.JetStream, name string) (Info, error) {
	s, err := lookupStream(ctx, js, name)
	if err != nil {
		return Info{}, err
	}
	si, err := s.Info(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("governor %q: %w", name, err)
	}
	return infoOf(si), nil
}

// List returns every governor, sorted by name.
func List(ctx context.Context, js jetstream.JetStream) ([]Info, error) {
	l := js.ListStreams(ctx, jetstream.WithStreamListSubject(SubjectPrefix+">"))
	var out []Info
	for si := range l.Info() {
		if strings.HasPrefix(si.Config.Name, StreamPrefix) {
			out = append(out, infoOf(si))
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list governors: %w", err)
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Remove deletes governor name. Nodes waiting for it then fail
// with [ErrNotFound].
func Remove(ctx context.Context, js jetstream.JetStream, name string) error {
	if err := checkGovernorName(name); err != nil {
		return fmt.Errorf("remove governor: %w", err)
	}
	if err := js.DeleteStream(ctx, Stream(name)); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return missingGovernor(name)
		}
		return fmt.Errorf("remove governor %q: %w", name, err)
	}
	return nil
}

// Reset frees every slot of governor name at once, for example
// after holders crashed and the expiry is long.
func Reset(ctx context.Context, js jetstream.JetStream, name string) error {
	s, err := lookupStream(ctx, js, name)
	if err != nil {
		return err
	}
	if err := s.Purge(ctx); err != nil {
		return fmt.Errorf("reset governor %q: %w", name, err)
	}
	return nil
}

// governorStream looks up governor name's stream.
func lookupStream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	if err := checkGovernorName(name); err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, Stream(name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, missingGovernor(name)
	}
	if err != nil {
		return nil, fmt.Errorf("governor %q: %w", name, err)
	}
	return s, nil
}
