package reactor_test

import (
	"os"
	"testing"

	"github.com/esmill/esmill/internal/testservice"
)

func TestMain(m *testing.M) { os.Exit(testservice.Main(m)) }
