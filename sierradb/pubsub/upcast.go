package pubsub

import (
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/esmill/esmill"

	"github.com/esmill/esmill/sierradb"
)

// UpcastFunc rewrites a stored event into its current shape: name, payload
// and metadata. It returns events it does not know unchanged. An entity
// type's UpcastStored method (package aggregate) is one.
type UpcastFunc func(ev sierradb.Event) (sierradb.Event, error)

// ChainUpcasts returns an [UpcastFunc] that runs each function in turn, for
// a subscription that sees several entity types (a category or the
// all-events topic): every aggregate.Type's UpcastStored passes the events
// of other categories through unchanged.
func ChainUpcasts(fs ...UpcastFunc) UpcastFunc {
	return func(ev sierradb.Event) (sierradb.Event, error) {
		for _, f := range fs {
			var err error
			if ev, err = f(ev); err != nil {
				return ev, err
			}
		}
		return ev, nil
	}
}

// message turns a stored event into a message, through the Upcast hook.
// Only the event's name, payload and metadata reach the message from the
// hook: positions and ids are the stored event's, and it is the stored
// event that is acknowledged.
func (s *Subscriber) message(ev *sierradb.Event) *message.Message {
	if s.cfg.Upcast == nil {
		return toMessage(ev)
	}
	up, err := s.cfg.Upcast(*ev)
	if err != nil {
		msg := toMessage(ev)
		msg.Metadata[esmill.MetaUpcastError] = err.Error()
		return msg
	}
	cur := *ev
	cur.Name, cur.Payload, cur.Metadata = up.Name, up.Payload, up.Metadata
	return toMessage(&cur)
}
