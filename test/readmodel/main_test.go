package readmodel_test

import (
	"os"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
	"github.com/esmill/esmill/test/internal/ferret"
)

func TestMain(m *testing.M) {
	code := testservice.Main(m)
	ferret.StopAll()
	os.Exit(code)
}
