package governor

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/mms-io/mms/internal/syncbuf"
)

// hangBound is how long a bounded wait may take in these tests before it
// counts as hanging.
const hangBound = 20 * time.Second

// acquireBounded calls g.Acquire in the background and fails the test if
// it does not return within hangBound.
func acquireBounded(t *testing.T, g *Governors, name string) (func(), error) {
	t.Helper()
	type result struct {
		release func()
		err     error
	}
	done := make(chan result, 1)
	go func() {
		r, err := g.Acquire(t.Context(), name)
		done <- result{r, err}
	}()
	select {
	case r := <-done:
		return r.release, r.err
	case <-time.After(hangBound):
		t.Fatalf("Acquire(%s) did not return within %s", name, hangBound)
		return nil, nil
	}
}

// TestGovernorWaitIsBounded is issue 18.5: a slot held by someone else
// holds a node only for the governor wait bound, and the wait is logged.
func TestGovernorWaitIsBounded(t *testing.T) {
	g, js := testGovernors(t)
	logs := &syncbuf.Buffer{}
	g.log = slog.New(slog.NewTextHandler(logs, nil))
	if _, err := Add(t.Context(), js, "downloads", 1, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	// Someone holds the only slot (and never gives it back).
	if _, err := js.Publish(t.Context(), Subject("downloads"), []byte("squatter")); err != nil {
		t.Fatal(err)
	}
	g.maxWait = 200 * time.Millisecond
	_, err := acquireBounded(t, g, "downloads")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "the bound on a governor wait (200ms) passed") {
		t.Fatalf("Acquire(full governor) = %v, want the wait bound", err)
	}
	if !strings.Contains(logs.String(), "governor slot not taken; retrying") || !strings.Contains(logs.String(), "reason=\"all slots taken\"") {
		t.Errorf("the wait is not logged with its reason:\n%s", logs)
	}
}

// TestGovernorPermissionDenied is issue 18.5: a node whose NATS user may
// not publish to the governor's subject gets that error at once, not an
// endless "full".
func TestGovernorPermissionDenied(t *testing.T) {
	opts := natstest.Options(t.TempDir())
	opts.Users = []*server.User{
		{Username: "admin", Password: "admin"},
		{Username: "node", Password: "node", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"mms.governor.>"}},
		}},
	}
	srv := natstest.Run(t, opts)
	admin, err := jetstream.New(natstest.Connect(t, srv, nats.UserInfo("admin", "admin")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Add(t.Context(), admin, "downloads", 5, time.Hour, 1); err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, srv, nats.UserInfo("node", "node"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	g, err := New(nc, "test@node1", nil)
	if err != nil {
		t.Fatal(err)
	}
	g.attempt = 200 * time.Millisecond
	_, err = acquireBounded(t, g, "downloads")
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), `may not publish to mms.governor.downloads`) ||
		!strings.Contains(err.Error(), `Permissions Violation for Publish to "mms.governor.downloads"`) {
		t.Fatalf("Acquire(denied governor) = %v, want %v naming the subject", err, ErrDenied)
	}
}
