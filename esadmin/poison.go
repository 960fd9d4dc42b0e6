package esadmin

func poisonCommand() *command {
	return &command{name: "poison", short: "list or re-drive the messages parked on a poison topic", long: "Poison topics."}
}
