package jscluster_test

import (
	"strings"
	"testing"

	"github.com/mms-io/mms/internal/jscluster"
	"github.com/mms-io/mms/internal/natstest"
)

func TestFreePorts(t *testing.T) {
	ports, err := jscluster.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("FreePorts(5) = %v: want 5 distinct ports", ports)
		}
		seen[p] = true
	}
}

func TestRoutes(t *testing.T) {
	routes := jscluster.Routes([]int{4250, 4251, 4252})
	var got []string
	for _, u := range routes {
		got = append(got, u.String())
	}
	want := "nats://127.0.0.1:4250 nats://127.0.0.1:4251 nats://127.0.0.1:4252"
	if strings.Join(got, " ") != want {
		t.Fatalf("Routes() = %v, want %s", got, want)
	}
}

func TestReady(t *testing.T) {
	servers := natstest.RunCluster(t, 3) // waits for Ready itself
	if err := jscluster.Ready(servers); err != nil {
		t.Fatalf("Ready() of a started cluster = %v", err)
	}
	standalone := natstest.RunJetStream(t)
	if err := jscluster.Ready(append(servers, standalone)); err == nil || !strings.Contains(err.Error(), "not clustered") {
		t.Fatalf("Ready() with a standalone server = %v, want it named as not clustered", err)
	}
}
