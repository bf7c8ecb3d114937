package machine

import (
	"context"
	"errors"
	"time"

	"github.com/mms-io/mms/watchers"
)

// The test binary registers a "probe" watcher type whose Validate fails on
// request, so validation can be tested without the built-in types.
func init() {
	watchers.Register(watchers.Info{
		Type: "probe", Version: "v1", New: func() watchers.Watcher { return new(probe) },
		MinInterval: watchers.Duration(time.Second),
	})
}

type probe struct {
	Key string `json:"key"`
	// Reject makes Validate fail.
	Reject bool `json:"reject,omitempty"`
}

func (p *probe) Validate() error {
	if p.Key == "" {
		return errors.New("key is required")
	}
	if p.Reject {
		return errors.New("rejected on request")
	}
	return nil
}

func (p *probe) Check(context.Context) (watchers.Result, error) { return watchers.Result{}, nil }
