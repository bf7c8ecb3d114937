// Package watchertest helps test watcher types: dependencies rooted in
// t.TempDir with an in-memory data store and a test logger, and Build, which
// creates a watcher through the real registry path (strict decoding,
// Validate, Provision) exactly as the agent does.
package watchertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"testing"

	"github.com/mms-io/mms/watchers"
)

// Deps returns dependencies for one watcher under test: machine "test",
// watcher "test", identity "node.example.net", a fresh t.TempDir as the
// machine directory, a logger writing to the test's output, an empty
// [Store] and facts {"os":{"family":"linux"}}. Tests change fields as they
// need.
func Deps(t testing.TB) watchers.Deps {
	t.Helper()
	return watchers.Deps{
		Machine:  "test",
		Watcher:  "test",
		Dir:      t.TempDir(),
		Identity: "node.example.net",
		Log:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Data:     NewStore(),
		Facts: func() map[string]any {
			return map[string]any{"os": map[string]any{"family": "linux"}}
		},
	}
}

// Build creates a watcher of type typ from properties (JSON) with fresh
// [Deps], failing the test on any error. The watcher is closed when the test
// ends.
func Build(t testing.TB, typ, properties string) watchers.Watcher {
	t.Helper()
	return BuildWith(t, Deps(t), typ, properties)
}

// BuildWith is [Build] with the caller's dependencies.
func BuildWith(t testing.TB, d watchers.Deps, typ, properties string) watchers.Watcher {
	t.Helper()
	w, err := New(d, typ, properties)
	if err != nil {
		t.Fatalf("build %s watcher from %s: %v", typ, properties, err)
	}
	t.Cleanup(func() {
		if c, ok := w.(watchers.Closer); ok {
			if err := c.Close(); err != nil {
				t.Errorf("close %s watcher: %v", typ, err)
			}
		}
	})
	return w
}

// New runs the agent's creation path: [watchers.Build] (strict decoding and
// Validate), then Provision with d. A watcher whose Provision fails is
// closed before the error is returned.
func New(d watchers.Deps, typ, properties string) (watchers.Watcher, error) {
	w, err := watchers.Build(typ, json.RawMessage(properties))
	if err != nil {
		return nil, err
	}
	if p, ok := w.(watchers.Provisioner); ok {
		if err := p.Provision(d); err != nil {
			err = fmt.Errorf("provision: %w", err)
			if c, ok := w.(watchers.Closer); ok {
				err = errors.Join(err, c.Close())
			}
			return nil, err
		}
	}
	return w, nil
}

// Store is an in-memory [watchers.DataStore]. Like the agent's persistent
// store it keeps values as their JSON round trip (numbers become float64,
// structs become maps), so a value that cannot be persisted fails here too.
// It is safe for concurrent use.
type Store struct {
	mu   sync.Mutex
	data map[string]any
}

var _ watchers.DataStore = (*Store)(nil)

// NewStore returns an empty store.
func NewStore() *Store { return &Store{data: map[string]any{}} }

// Get returns the value stored under key.
func (s *Store) Get(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[key]
	return v, ok
}

// Put stores the JSON round trip of value under key.
func (s *Store) Put(key string, value any) error {
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("store %q: %w", key, err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("store %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = v
	return nil
}

// Delete removes key.
func (s *Store) Delete(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, key)
	return nil
}

// All returns a copy of every key and value.
func (s *Store) All() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.data)
}
