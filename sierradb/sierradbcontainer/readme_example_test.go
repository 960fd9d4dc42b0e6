package sierradbcontainer_test

// The README's test-tier snippet, compiled and run here (this module may
// import testcontainers-go; the root module's TestReadmeSnippets checks the
// text against README.md).

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/esmill/esmill/sierradb"
	"github.com/esmill/esmill/sierradb/embedded"
	"github.com/esmill/esmill/sierradb/sierradbcontainer"
	"github.com/esmill/esmill/sierradb/sierradbtest"
)

// README begin
// sierraAddr gives a test the SierraDB of the tier named by $SIERRA_TIER.
func sierraAddr(t *testing.T) string {
	switch os.Getenv("SIERRA_TIER") {
	case "container": // in a module that may import testcontainers-go
		ctr := sierradbcontainer.RunT(t, sierradbcontainer.DefaultImage)
		addr, err := ctr.Address(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return addr
	case "process":
		return sierradbtest.RunT(t).Addr()
	default:
		return embedded.RunT(t).Addr()
	}
}

// README end

// Each tier the snippet names gives an address that answers as SierraDB.
func TestReadmeTiers(t *testing.T) {
	for _, tier := range []string{"", "process", "container"} {
		t.Run("tier="+tier, func(t *testing.T) {
			t.Setenv("SIERRA_TIER", tier)
			if tier == "container" {
				defaultImageFromLocalBuild(t)
			}
			c, err := sierradb.New(sierradb.Config{Addr: sierraAddr(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Hello(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// defaultImageFromLocalBuild lets the snippet's official image name work on
// a machine without a registry: when .ci/images/build gave a local image
// (ESMILL_SIERRADB_IMAGE) and the official one is absent, the local image
// is tagged with the official name for this test, and untagged after.
func defaultImageFromLocalBuild(t *testing.T) {
	local := os.Getenv(envImage)
	if local == "" || local == sierradbcontainer.DefaultImage {
		return
	}
	if exec.Command("docker", "image", "inspect", sierradbcontainer.DefaultImage).Run() == nil {
		return
	}
	if out, err := exec.Command("docker", "tag", local, sierradbcontainer.DefaultImage).CombinedOutput(); err != nil {
		t.Fatalf("docker tag %s %s: %v: %s", local, sierradbcontainer.DefaultImage, err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", sierradbcontainer.DefaultImage).Run() })
}
