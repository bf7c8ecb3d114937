package natstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mms-io/mms/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestRunClusterR3KVSurvivesLeaderLoss(t *testing.T) {
	start := time.Now()
	servers := natstest.RunCluster(t, 3)
	t.Logf("3-server cluster ready in %v", time.Since(start))

	nc, err := nats.Connect(natstest.ClientURLs(servers))
	if err != nil {
		t.Fatalf("nats.Connect(%s) = %v", natstest.ClientURLs(servers), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New() = %v", err)
	}
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "MACHINES", Replicas: 3})
	if err != nil {
		t.Fatalf("CreateKeyValue(MACHINES, R3) = %v", err)
	}
	if _, err := kv.Put(ctx, "spec", []byte("v1")); err != nil {
		t.Fatalf("Put(spec, v1) = %v", err)
	}
	if got := getValue(ctx, kv, "spec"); got != "v1" {
		t.Fatalf("Get(spec) = %q, want v1", got)
	}

	down := natstest.ShutdownStreamLeader(t, servers, "KV_MACHINES")
	t.Logf("shut down stream leader %s at %v", down.Name(), time.Since(start))

	natstest.Eventually(t, 30*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := kv.Put(pctx, "spec", []byte("v2")); err != nil {
			return fmt.Errorf("put after leader loss: %w", err)
		}
		if got := getValue(pctx, kv, "spec"); got != "v2" {
			return fmt.Errorf("get after leader loss = %q, want v2", got)
		}
		return nil
	})
	leader := natstest.StreamLeader(t, servers, "KV_MACHINES")
	if leader == down {
		t.Errorf("StreamLeader() = %s, the server that was shut down", leader.Name())
	}
	t.Logf("new stream leader %s, bucket writable again at %v", leader.Name(), time.Since(start))
}

func getValue(ctx context.Context, kv jetstream.KeyValue, key string) string {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(e.Value())
}

// BenchmarkRunCluster3 measures RunCluster(3) until the cluster is ready for
// replicated streams; shutdown is not timed.
func BenchmarkRunCluster3(b *testing.B) {
	for b.Loop() {
		servers := natstest.RunCluster(b, 3)
		b.StopTimer()
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
		b.StartTimer()
	}
}
