package natstest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mms-io/mms/internal/natstest"
)

func TestMain(m *testing.M) {
	natstest.Serve()
	os.Exit(m.Run())
}

// TestClusterProcessesKillAndRestart: an R3 bucket on three server
// processes keeps its data through a SIGKILL of the server leading it and
// that server's restart on the same ports and store.
func TestClusterProcessesKillAndRestart(t *testing.T) {
	ps := natstest.RunClusterProcesses(t, 3)
	nc, err := nats.Connect(natstest.ProcessURLs(ps), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var kv jetstream.KeyValue
	natstest.Eventually(t, time.Minute, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		kv, err = js.CreateKeyValue(cctx, jetstream.KeyValueConfig{Bucket: "K", Replicas: 3})
		return err
	})
	if _, err := kv.Put(ctx, "k", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "KV_K")
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	var killed *natstest.Process
	for _, p := range ps {
		if p.Name == leader {
			killed = p
		}
	}
	if killed == nil {
		t.Fatalf("stream leader %q is none of the processes", leader)
	}
	killed.Kill(t)
	if killed.Running() {
		t.Fatalf("%s runs after Kill", killed.Name)
	}
	natstest.Eventually(t, time.Minute, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := kv.Put(cctx, "k", []byte("v2"))
		return err
	})
	killed.Start(t)
	natstest.Eventually(t, time.Minute, func() error {
		si, err := s.Info(ctx)
		if err != nil {
			return err
		}
		for _, r := range si.Cluster.Replicas {
			if r.Name == killed.Name && r.Current {
				return nil
			}
		}
		return fmt.Errorf("%s not a current replica yet: %+v", killed.Name, si.Cluster)
	})
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v2" {
		t.Fatalf("Get(k) = %v, %v; want v2", e, err)
	}
}
