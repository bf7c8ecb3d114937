package watchers

// Sample is one value a watcher exports for the node's Prometheus endpoint.
type Sample struct {
	// Name is the metric name. The exporter replaces characters Prometheus
	// does not allow with '_'.
	Name string
	// Help describes the metric; samples of one name share the help of the
	// first.
	Help string
	// Labels are the sample's labels; names are sanitised like Name.
	Labels map[string]string
	// Value is the sample's value.
	Value float64
	// Counter marks a counter; otherwise the sample is a gauge.
	Counter bool
}

// MetricsSink receives the samples one watcher exports (see Deps.Metrics).
// Set replaces everything the watcher exported before; Set(nil) removes it,
// which a watcher does when it closes. It is safe for concurrent use.
type MetricsSink interface {
	Set(samples []Sample)
}
