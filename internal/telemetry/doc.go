// Package telemetry is esmill's one place for OpenTelemetry: the
// instrumentation scope, the trace context carriers (Watermill message
// metadata and the stored event envelope, both under the W3C names
// esmill.MetaTraceParent and esmill.MetaTraceState), the attribute keys,
// and the names of every metric the library records. The packages that
// instrument (aggregate, cqrs, readmodel, middleware) take a
// trace.TracerProvider and a metric.MeterProvider in their Config and
// default to the global ones, which record nothing until an application
// installs an SDK.
//
// Only the OpenTelemetry API is imported here; the SDK is for
// applications, examples and tests.
package telemetry
