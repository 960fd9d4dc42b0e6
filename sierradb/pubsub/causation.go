package pubsub

import (
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/esmill/esmill"
	"github.com/esmill/esmill/codec"
)

// CausationOf returns the causation that names the event a message
// delivered by a [Subscriber] carries, for a command sent because of it:
//
//	c, err := pubsub.CausationOf(msg)
//	...
//	bus.Send(ctx, accounts, id, cmd, cqrs.CausedBy(c))
//
// The target entity then runs the command once per causing event and
// command name, however often the message is delivered.
//
// It reads the event's position keys (esmill.MetaEventID, MetaStreamID
// and MetaStreamVersion), not the causation keys, which name the event
// that caused the command behind this one. A message that lacks them (it
// did not come from a Subscriber) or holds malformed values gives a
// [*MessageError] (matching [ErrInvalidMessage]).
func CausationOf(msg *message.Message) (codec.Causation, error) {
	bad := func(key, reason string, err error) (codec.Causation, error) {
		return codec.Causation{}, &MessageError{UUID: msg.UUID, Key: key, Reason: reason, Err: err}
	}
	md := msg.Metadata
	eid, sid, ver := md.Get(esmill.MetaEventID), md.Get(esmill.MetaStreamID), md.Get(esmill.MetaStreamVersion)
	switch {
	case eid == "":
		return bad(esmill.MetaEventID, "missing: the message was not delivered by a sierradb/pubsub Subscriber", nil)
	case sid == "":
		return bad(esmill.MetaStreamID, "missing: the message was not delivered by a sierradb/pubsub Subscriber", nil)
	case ver == "":
		return bad(esmill.MetaStreamVersion, "missing: the message was not delivered by a sierradb/pubsub Subscriber", nil)
	}
	id, err := uuid.Parse(eid)
	if err != nil {
		return bad(esmill.MetaEventID, "not a UUID", err)
	}
	v, err := strconv.ParseUint(ver, 10, 64)
	if err != nil {
		return bad(esmill.MetaStreamVersion, "not a version number", err)
	}
	return codec.Causation{EventID: id, StreamID: sid, StreamVersion: v}, nil
}
