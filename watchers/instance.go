package watchers

import "github.com/google/uuid"

// instanceNamespace is the UUIDv5 namespace machine instance ids are
// derived in.
var instanceNamespace = uuid.MustParse("4d3e7a5c-2f0b-5c6e-9a51-6d6d732d6964")

// InstanceID returns the stable id of machine name on the node identity: a
// UUIDv5 of identity, a NUL byte and the name. It does not change across
// reloads or restarts (Choria's changes on every load).
func InstanceID(identity, name string) string {
	return uuid.NewSHA1(instanceNamespace, []byte(identity+"\x00"+name)).String()
}
