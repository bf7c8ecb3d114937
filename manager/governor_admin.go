package manager

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

// GovernorInfo describes a governor.
type GovernorInfo struct {
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

// governorInfo turns a governor stream's info into a GovernorInfo.
func governorInfo(si *jetstream.StreamInfo) GovernorInfo {
	return GovernorInfo{
		Name:     strings.TrimPrefix(si.Config.Name, GovernorStreamPrefix),
		Limit:    si.Config.MaxMsgs,
		InUse:    si.State.Msgs,
		Expire:   si.Config.MaxAge,
		Replicas: si.Config.Replicas,
	}
}

// AddGovernor creates governor name, or changes the limit, expiry and
// replicas of an existing one. limit must be at least 1 and expire
// positive: without an expiry a crashed holder would keep its slot forever.
func AddGovernor(ctx context.Context, js jetstream.JetStream, name string, limit int64, expire time.Duration, replicas int) (GovernorInfo, error) {
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
		return GovernorInfo{}, fmt.Errorf("add governor: %w", err)
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        GovernorStream(name),
		Description: fmt.Sprintf("mms governor %s: at most %d concurrent holders", name, limit),
		Subjects:    []string{GovernorSubject(name)},
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     limit,
		Discard:     jetstream.DiscardNew,
		MaxAge:      expire,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  min(expire, maxGovernorDuplicates),
	})
	if err != nil {
		return GovernorInfo{}, fmt.Errorf("add governor %q: %w", name, err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		return GovernorInfo{}, fmt.Errorf("add governor %q: read it back: %w", name, err)
	}
	return governorInfo(si), nil
}

// GetGovernor returns governor name; a missing one wraps [ErrNoGovernor].
func GetGovernor(ctx context.Context, js jetstream.JetStream, name string) (GovernorInfo, error) {
	s, err := governorStream(ctx, js, name)
	if err != nil {
		return GovernorInfo{}, err
	}
	si, err := s.Info(ctx)
	if err != nil {
		return GovernorInfo{}, fmt.Errorf("governor %q: %w", name, err)
	}
	return governorInfo(si), nil
}

// ListGovernors returns every governor, sorted by name.
func ListGovernors(ctx context.Context, js jetstream.JetStream) ([]GovernorInfo, error) {
	l := js.ListStreams(ctx, jetstream.WithStreamListSubject(GovernorSubjectPrefix+">"))
	var out []GovernorInfo
	for si := range l.Info() {
		if strings.HasPrefix(si.Config.Name, GovernorStreamPrefix) {
			out = append(out, governorInfo(si))
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("list governors: %w", err)
	}
	slices.SortFunc(out, func(a, b GovernorInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// RemoveGovernor deletes governor name. Nodes waiting for it then fail
// with [ErrNoGovernor].
func RemoveGovernor(ctx context.Context, js jetstream.JetStream, name string) error {
	if err := checkGovernorName(name); err != nil {
		return fmt.Errorf("remove governor: %w", err)
	}
	if err := js.DeleteStream(ctx, GovernorStream(name)); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return missingGovernor(name)
		}
		return fmt.Errorf("remove governor %q: %w", name, err)
	}
	return nil
}

// ResetGovernor frees every slot of governor name at once, for example
// after holders crashed and the expiry is long.
func ResetGovernor(ctx context.Context, js jetstream.JetStream, name string) error {
	s, err := governorStream(ctx, js, name)
	if err != nil {
		return err
	}
	if err := s.Purge(ctx); err != nil {
		return fmt.Errorf("reset governor %q: %w", name, err)
	}
	return nil
}

// governorStream looks up governor name's stream.
func governorStream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	if err := checkGovernorName(name); err != nil {
		return nil, err
	}
	s, err := js.Stream(ctx, GovernorStream(name))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, missingGovernor(name)
	}
	if err != nil {
		return nil, fmt.Errorf("governor %q: %w", name, err)
	}
	return s, nil
}
