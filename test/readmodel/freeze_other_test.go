//go:build !unix

package readmodel_test

import "errors"

func freeze(pid int, stop bool) error { return errors.New("pausing a process needs Unix") }

const canFreeze = false
