package esadmin

func projectionCommand() *command {
	return &command{name: "projection", short: "reset or rebuild a projection", long: "Projections."}
}
