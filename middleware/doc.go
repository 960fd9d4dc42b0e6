// Package middleware holds Watermill handler middleware for command
// routers: causation and message-id deduplication ([Dedup]), rate limiting
// per key, in one process or shared through Redis ([RateLimit]), and
// retries with one error classification and a poison queue ([Retry]).
// Each is a struct of settings with a Middleware method of the form
// func(message.HandlerFunc) message.HandlerFunc.
//
// # A router with all three
//
//	router.AddMiddleware(
//		// Outermost: park what cannot succeed, retry what can.
//		middleware.Retry{PoisonPublisher: pub, PoisonTopic: "esmill.poison"}.Middleware,
//		// Skip messages already handled, across processes.
//		middleware.Dedup{Store: middleware.NewRedisDedupStore(rdb, "dedup:"), ReplyPublisher: pub}.Middleware,
//		// At most 100 commands per second per tenant, shared by every
//		// router process.
//		middleware.RateLimit{
//			Limiter: middleware.NewRedisLimiter(rdb, "ratelimit:", redis_rate.PerSecond(100)),
//			Key:     middleware.MetadataKey("tenant"),
//			Wait:    true,
//		}.Middleware,
//	)
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
// routed, a panic) is parked at once.
package middleware
