// Package shared locates the project's shared folder (public corpus,
// captures) for tests. CI checks it out beside the repository, so it is
// ../shared from the module root; EHRBRIDGE_SHARED overrides that.
package shared

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the shared folder, failing the test when it is missing: the
// corpus tests are part of the suite, not optional.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("EHRBRIDGE_SHARED"); d != "" {
		return d
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("finding the module root: %v", err)
	}
	d := filepath.Join(root, "..", "shared")
	if _, err := os.Stat(filepath.Join(d, "corpus")); err != nil {
		t.Fatalf("shared folder not found at %s (set EHRBRIDGE_SHARED): %v", d, err)
	}
	return d
}

// Path joins elements onto the shared folder.
func Path(t testing.TB, elem ...string) string {
	return filepath.Join(append([]string{Dir(t)}, elem...)...)
}

// CorpusFile is one file of the public corpus: its path below corpus/
// (slash-separated) and its bytes.
type CorpusFile struct {
	Rel  string
	Data []byte
}

// CorpusFiles returns every message and resource file of the public
// corpus (corpus/hl7v2 *.hl7, corpus/fhir-r4 *.json and *.fhir), in path
// order, READMEs and licence texts left out.
func CorpusFiles(t testing.TB) []CorpusFile {
	t.Helper()
	root := Path(t, "corpus")
	var files []CorpusFile
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".hl7", ".json", ".fhir":
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files = append(files, CorpusFile{Rel: filepath.ToSlash(rel), Data: data})
		return nil
	})
	if err != nil {
		t.Fatalf("reading the corpus: %v", err)
	}
	return files
}

// ModuleRoot returns the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("finding the module root: %v", err)
	}
	return root
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
