package embedded_test

const hostileHelperEnv = "EMBEDDED_HOSTILE_HELPER"

func runHostileHelper() {}
