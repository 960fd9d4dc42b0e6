package esadmin

// tree is the command tree.
func (a *App) tree() *command {
	return &command{
		name: a.Name,
		long: a.Name + ` administers esmill services: the progress of projections and
reactors, their parked events, the poison topic of the command bus, and
streams. It talks to SierraDB, Redis and the projection store named by
flags or environment variables (ESMILL_SIERRADB, ESMILL_REDIS,
ESMILL_POSTGRES or ESMILL_SQLITE, ESMILL_TABLE_PREFIX), prints tables
for people and, with --json, JSON for scripts, and exits with status 1
and a one-line reason on failure (2 for a wrong command line).`,
		sub: []*command{statusCommand(), parkedCommand(), poisonCommand(), projectionCommand(), streamCommand(), tailCommand()},
	}
}
