// Package middleware holds Watermill handler middleware for command
// routers: causation and message-id deduplication ([NewDedup]), rate
// limiting per key, in one process or shared through Redis
// ([NewRateLimit]), and retries with one error classification and a poison
// queue ([NewRetry]). Each constructor takes a Config struct (validated,
// then defaulted, as everywhere in esmill) and returns a
// message.HandlerMiddleware, or the configuration's problems: nothing
// panics while wiring.
//
// # A router with all three
//
//	// Outermost: park what cannot succeed, retry what can.
//	retry, err := middleware.NewRetry(middleware.RetryConfig{PoisonPublisher: pub, PoisonTopic: "esmill.poison"})
//	// Skip messages already handled, across processes.
//	dedup, err := middleware.NewDedup(middleware.DedupConfig{Store: middleware.NewRedisDedupStore(rdb, "dedup:"), ReplyPublisher: pub})
//	// At most 100 commands per second per tenant, shared by every router
//	// process.
//	limit, err := middleware.NewRateLimit(middleware.RateLimitConfig{
//		Limiter: middleware.NewRedisLimiter(rdb, "ratelimit:", redis_rate.PerSecond(100)),
//		Key:     middleware.MetadataKey("tenant"),
//		Wait:    true,
//	})
//	router.AddMiddleware(retry, dedup, limit)
//	commandRouter.AddHandlers(router, sub)
//
// Order matters: Retry outermost, so that a rate-limited or transiently
// failing command is retried with backoff; Dedup inside it, so that a
// retried command is checked again.
//
// # Errors
//
// Retry asks esmill.Classify what a failure means, the same question the
// command router and the projection runner ask: transient (a dropped
// connection, SierraDB's retryable codes, write conflicts beyond the
// executor's own retries, a lock or rate-limit wait; and any error that
// declares no class) is retried with backoff, final (a business rejection)
// is never retried, and poison (a message that cannot be decoded or
// routed, a panic) is parked at once. A command router returns its poison
// outcomes (after answering the caller) only with
// cqrs.RouterConfig.FailBadCommands; without it, it acks them. A panic
// anywhere inside Retry (a handler, a middleware) is recovered by Retry
// itself, logged with its stack and parked (tested:
// TestRetryParksAPanic, TestRouterPanicReachesThePoisonQueue).
package middleware
