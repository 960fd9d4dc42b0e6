package sierradb_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// An option given to a call it does not apply to is a compile error, not
// an option silently dropped (PartitionScan used to drop WithPartitionKey).
func TestMisplacedOptionDoesNotCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the compiler")
	}
	out, err := exec.Command("go", "build", "-o", os.DevNull, "./testdata/misplacedoption").CombinedOutput()
	if err == nil {
		t.Fatal("a partition scan with a partition key compiled")
	}
	if !strings.Contains(string(out), "PartitionScanOption") {
		t.Fatalf("compiler said:\n%s", out)
	}
}
