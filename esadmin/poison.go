package esadmin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/esmill/esmill"
)

// PoisonMessage is a message the retry middleware
// (middleware.RetryConfig.PoisonTopic) parked on a poison topic kept in a
// Redis stream (watermill-redisstream's format).
type PoisonMessage struct {
	// ID is the message's entry id in the poison stream.
	ID string `json:"id"`
	// UUID is the Watermill message's id: a command's id.
	UUID string `json:"uuid"`
	// Topic is the topic the message was consumed from, where a redrive
	// sends it back.
	Topic    string `json:"topic"`
	Handler  string `json:"handler"`
	Class    string `json:"class"`
	Reason   string `json:"reason"`
	Attempts int    `json:"attempts"`
	// Command, Category and EntityID name a command message's command
	// and entity.
	Command  string `json:"command,omitempty"`
	Category string `json:"category,omitempty"`
	EntityID string `json:"entity_id,omitempty"`
	// PayloadFormat and Payload are the decoded payload (see [Event]).
	PayloadFormat string            `json:"payload_format"`
	Payload       any               `json:"payload"`
	Metadata      map[string]string `json:"metadata"`
}

var poisonKeys = []string{esmill.MetaPoisonReason, esmill.MetaPoisonClass, esmill.MetaPoisonHandler, esmill.MetaPoisonTopic, esmill.MetaPoisonAttempts}

func poisonMessage(x redis.XMessage) (PoisonMessage, error) {
	msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(x.Values)
	if err != nil {
		return PoisonMessage{}, fmt.Errorf("poison entry %s is not a Watermill message: %w", x.ID, err)
	}
	m := PoisonMessage{
		ID: x.ID, UUID: msg.UUID, Topic: msg.Metadata.Get(esmill.MetaPoisonTopic), Handler: msg.Metadata.Get(esmill.MetaPoisonHandler),
		Class: msg.Metadata.Get(esmill.MetaPoisonClass), Reason: msg.Metadata.Get(esmill.MetaPoisonReason),
		Command: msg.Metadata.Get(esmill.MetaCommand), Category: msg.Metadata.Get(esmill.MetaCategory), EntityID: msg.Metadata.Get(esmill.MetaEntityID),
		Metadata: map[string]string(msg.Metadata),
	}
	m.Attempts, _ = strconv.Atoi(msg.Metadata.Get(esmill.MetaPoisonAttempts))
	m.PayloadFormat, m.Payload = decodePayload(msg.Payload)
	return m, nil
}

// ListPoison returns up to limit messages (0: all) parked on the poison
// topic, oldest first.
func ListPoison(ctx context.Context, rdb redis.Cmdable, topic string, limit int) ([]PoisonMessage, error) {
	var xs []redis.XMessage
	var err error
	if limit > 0 {
		xs, err = rdb.XRangeN(ctx, topic, "-", "+", int64(limit)).Result()
	} else {
		xs, err = rdb.XRange(ctx, topic, "-", "+").Result()
	}
	if err != nil {
		return nil, fmt.Errorf("read poison topic %s: %w", topic, err)
	}
	out := make([]PoisonMessage, 0, len(xs))
	for _, x := range xs {
		m, err := poisonMessage(x)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// ErrNotPoisoned: no message with the entry id is on the poison topic.
var ErrNotPoisoned = errors.New("esadmin: no such message on the poison topic")

// Redrive sends the messages with the given entry ids (all of them when
// ids is empty) back to the topic each was consumed from, or to to when
// it is not empty, without the poison metadata, and then deletes them
// from the poison topic. Their UUIDs are kept: a command message is
// executed once however often it is re-driven (the executor recognises
// its id), so a redrive that dies between the send and the delete can be
// run again. It returns the messages re-driven, their Topic set to where
// they went.
func Redrive(ctx context.Context, rdb redis.Cmdable, topic string, ids []string, to string) ([]PoisonMessage, error) {
	var xs []redis.XMessage
	if len(ids) == 0 {
		all, err := rdb.XRange(ctx, topic, "-", "+").Result()
		if err != nil {
			return nil, fmt.Errorf("read poison topic %s: %w", topic, err)
		}
		xs = all
	}
	for _, id := range ids {
		one, err := rdb.XRange(ctx, topic, id, id).Result()
		if err != nil {
			return nil, fmt.Errorf("read poison topic %s: %w", topic, err)
		}
		if len(one) == 0 {
			return nil, fmt.Errorf("%w: %s has no entry %s (list them with: poison list --topic %s)", ErrNotPoisoned, topic, id, topic)
		}
		xs = append(xs, one...)
	}
	var done []PoisonMessage
	for _, x := range xs {
		m, err := poisonMessage(x)
		if err != nil {
			return done, err
		}
		msg, _ := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(x.Values)
		dest := to
		if dest == "" {
			dest = m.Topic
		}
		if dest == "" {
			return done, fmt.Errorf("poison entry %s does not say which topic it came from (%s): give --to", x.ID, esmill.MetaPoisonTopic)
		}
		for _, k := range poisonKeys {
			delete(msg.Metadata, k)
		}
		values, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(dest, msg)
		if err != nil {
			return done, fmt.Errorf("poison entry %s: %w", x.ID, err)
		}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: dest, Values: values}).Err(); err != nil {
			return done, fmt.Errorf("send poison entry %s to %s: %w", x.ID, dest, err)
		}
		if err := rdb.XDel(ctx, topic, x.ID).Err(); err != nil {
			return done, fmt.Errorf("poison entry %s was sent to %s but not deleted from %s (a redrive again sends it again; a command runs once): %w", x.ID, dest, topic, err)
		}
		m.Topic = dest
		done = append(done, m)
	}
	return done, nil
}

func poisonCommand() *command {
	topicFlag := func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.topic, "topic", "", "the poison topic (the retry middleware's PoisonTopic; required)")
	}
	return &command{
		name: "poison", short: "list or re-drive the messages parked on a poison topic",
		long: `Handle the messages the retry middleware parked on a poison topic kept in
Redis (watermill-redisstream): commands that panicked, did not decode, or
failed past their retries.`,
		sub: []*command{
			{name: "list", short: "list the parked messages with their reasons", nargs: 0, conn: redisFlags,
				long: `List the messages on the poison topic, oldest first, with the topic each
came from, its handler, error class, attempts and reason, and for commands
the entity and the command.`,
				flags: func(fs *flag.FlagSet, o *opts) {
					topicFlag(fs, o)
					fs.IntVar(&o.limit, "limit", 0, "list at most `n` messages (0: all)")
				},
				run: runPoisonList},
			{name: "redrive", args: "[ID...]", short: "send parked messages back to their topics", nargs: -1, conn: redisFlags,
				long: `Send the messages with the given entry ids (or, with --all, every message)
back to the topic each came from, without the poison metadata, and delete
them from the poison topic. A command keeps its id, so it is executed once
however often it is re-driven.`,
				flags: func(fs *flag.FlagSet, o *opts) {
					topicFlag(fs, o)
					fs.BoolVar(&o.all, "all", false, "re-drive every message on the topic")
					fs.StringVar(&o.to, "to", "", "send to this `topic` instead of the one each came from")
				},
				run: runPoisonRedrive},
		},
	}
}

func runPoisonList(ctx context.Context, x *exec, _ []string) error {
	if x.o.topic == "" {
		return x.usage(errors.New("--topic is required"))
	}
	rdb, err := x.redisClient(ctx)
	if err != nil {
		return err
	}
	ms, err := ListPoison(ctx, rdb, x.o.topic, x.o.limit)
	if err != nil {
		return err
	}
	if x.o.json {
		return x.emit(ms)
	}
	if len(ms) == 0 {
		_, err := fmt.Fprintf(x.out, "no messages on %s\n", x.o.topic)
		return err
	}
	w := tabwriter.NewWriter(x.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUUID\tFROM TOPIC\tCOMMAND\tENTITY\tCLASS\tATTEMPTS\tREASON")
	for _, m := range ms {
		entity := ""
		if m.Category != "" {
			entity = m.Category + "-" + m.EntityID
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.ID, m.UUID, m.Topic, m.Command, entity, m.Class, m.Attempts, oneLine(m.Reason))
	}
	return w.Flush()
}

func runPoisonRedrive(ctx context.Context, x *exec, ids []string) error {
	switch {
	case x.o.topic == "":
		return x.usage(errors.New("--topic is required"))
	case len(ids) == 0 && !x.o.all:
		return x.usage(errors.New("name the entry ids to re-drive, or give --all"))
	case len(ids) > 0 && x.o.all:
		return x.usage(errors.New("give entry ids or --all, not both"))
	}
	rdb, err := x.redisClient(ctx)
	if err != nil {
		return err
	}
	done, err := Redrive(ctx, rdb, x.o.topic, ids, x.o.to)
	for _, m := range done {
		if x.o.json {
			x.emit(m)
		} else {
			fmt.Fprintf(x.out, "re-drove %s (%s %s) to %s\n", m.ID, m.UUID, m.Command, m.Topic)
		}
	}
	return err
}
