package watchers

import "testing"

func TestInstanceID(t *testing.T) {
	a := InstanceID("node1", "web")
	if a != InstanceID("node1", "web") {
		t.Error("InstanceID is not deterministic")
	}
	for _, other := range [][2]string{{"node2", "web"}, {"node1", "db"}, {"node1w", "eb"}} {
		if InstanceID(other[0], other[1]) == a {
			t.Errorf("InstanceID(%q, %q) collides with InstanceID(node1, web)", other[0], other[1])
		}
	}
}
