package pubsub

import "time"

// SetSkipFlushInterval changes how long an idle category subscription of
// s waits before it saves the positions of the events it passed over.
func SetSkipFlushInterval(s *Subscriber, d time.Duration) { s.skipFlushInterval = d }

// SkipFlushEvery is how many passed-over events are saved at once.
const SkipFlushEvery = skipFlushEvery
