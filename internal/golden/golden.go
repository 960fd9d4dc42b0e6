// Package golden loads the golden bytes that serde and ciborium wrote with
// kameo_es's types (codec/testdata/kameo_golden.json, made by the Rust
// program in codec/testdata/kameo-golden), for the tests of every package
// that checks the data format against them.
package golden

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Kameo returns the golden encodings by name.
func Kameo(t testing.TB) map[string][]byte {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "..", "codec", "testdata", "kameo_golden.json"))
	if err != nil {
		t.Fatalf("read the kameo_es golden bytes: %v", err)
	}
	var hexes map[string]string
	if err := json.Unmarshal(raw, &hexes); err != nil {
		t.Fatalf("kameo_golden.json: %v", err)
	}
	out := make(map[string][]byte, len(hexes))
	for k, h := range hexes {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("kameo_golden.json: %s: %v", k, err)
		}
		out[k] = b
	}
	return out
}
