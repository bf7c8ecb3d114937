package nodestatus

import "github.com/nats-io/nats.go/jetstream"

// testBucketConfig is the status bucket as these tests need it: one value
// per key, values up to MaxDocumentSize. (The fleet's bucket, with its
// replicas and size, is provision's.)
func testBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: Bucket, History: 1, MaxValueSize: MaxDocumentSize}
}
