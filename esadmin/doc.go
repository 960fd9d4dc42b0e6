// Package esadmin is the admin command tree of esmill services, as a
// library: the esmill command (cmd/esmill) is [App] with nothing
// registered, and a service embeds the same commands in a binary of its
// own with its projections and reactors registered, so that what needs
// their code works too.
//
//	app := &esadmin.App{Name: "bank-admin", Targets: []esadmin.Target{
//		esadmin.Projection(balancesConfig, dropBalances), // a readmodel.Config with its handlers
//	}}
//	os.Exit(app.Main())
//
// The commands:
//
//   - status [--watch 2s]: per projection and reactor, per partition, the
//     stored checkpoint, the server's head (EPSEQ), the lag and a state
//     (caught-up, behind, diverged), and the number of parked events
//     ([ReadStatus]). No runner needs to run.
//   - parked list|show|replay|skip: the events a projection or reactor
//     parked (readmodel.Admin). Replay needs the projection's handlers:
//     the esmill command, which has none, refuses it
//     (readmodel.ErrNoHandlers) and a program that registers the
//     projection ([Projection], [Reactor]) runs it.
//   - poison list|redrive: the messages the retry middleware parked on a
//     poison topic (a Redis stream), and sending them back to the topic
//     they came from ([Redrive]).
//   - projection reset|rebuild: forget a registered projection's
//     checkpoints and read model, and rebuild it from the events, with a
//     progress bar on a terminal and progress lines otherwise.
//   - stream show ID and tail CATEGORY: events decoded as JSON, payload
//     and metadata (command, causation, correlation and command ids,
//     trace context), as esmill and kameo_es write them ([DecodeEvent]).
//
// The services are named by flags or environment variables: --sierradb
// (ESMILL_SIERRADB), --redis (ESMILL_REDIS), and the projection store,
// --postgres (ESMILL_POSTGRES) or --sqlite (ESMILL_SQLITE), with
// --table-prefix (ESMILL_TABLE_PREFIX). Projections found in that store
// (readmodel.Lister) are shown and handled beside the registered ones,
// without their handlers ([Stored]).
//
// Tables are printed for people; --json prints one JSON value per line
// for scripts. A failure ends the command with status 1 and a one-line
// reason, a wrong command line with status 2 ([ErrUsage]).
//
// The end-to-end tests in cmd/esmill run the esmill command and an
// embedding program as processes against real SierraDB, Redis and
// PostgreSQL (TestStatusParkedStream); the help texts are checked against
// testdata/help (TestHelpGolden).
package esadmin
