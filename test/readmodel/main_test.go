package readmodel_test

import (
	"os"
	"testing"

	"github.com/esmill/esmill/internal/leakcheck"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/test/internal/ferret"
)

func TestMain(m *testing.M) {
	code := m.Run()
	ferret.StopAll()
	testservice.StopAll()
	os.Exit(leakcheck.After(code))
}
