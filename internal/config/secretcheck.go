package config

import (
	"fmt"
	"path/filepath"
	"reflect"
)

// walkSecrets calls fn with the dotted path of every SecretRef reachable
// from v through tagged fields, non-nil pointers and slices, after naming
// each reference after its key so that Resolve errors can say which
// setting is wrong.
func walkSecrets(v reflect.Value, path string, fn func(path string, ref *SecretRef)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkSecrets(v.Elem(), path, fn)
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkSecrets(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fn)
		}
	case reflect.Struct:
		for _, f := range structInfoOf(v.Type()).fields {
			fv := v.FieldByIndex(f.index)
			if f.secret {
				ref := fv.Addr().Interface().(*SecretRef)
				ref.Key = f.key
				fn(joinPath(path, f.key), ref)
				continue
			}
			walkSecrets(fv, joinPath(path, f.key), fn)
		}
	}
}

// checkSecrets validates every SecretRef in the struct target points to:
// at most one source, and that source usable now, so a missing variable or
// unreadable file is found when the config is checked rather than when the
// secret is first needed. Values are never read into memory here.
func checkSecrets(pos positions, target any, base string, lookup func(string) (string, bool)) Problems {
	var probs Problems
	walkSecrets(reflect.ValueOf(target).Elem(), "", func(path string, ref *SecretRef) {
		envPath, filePath := path+"_env", path+"_file"
		switch {
		case ref.Env != "" && ref.File != "":
			probs = append(probs, pos.problem(filePath, "set only one of %s_env and %s_file", ref.Key, ref.Key))
		case ref.Env != "":
			if msg := checkEnvName(ref.Env); msg != "" {
				probs = append(probs, pos.problem(envPath, "invalid environment variable name %s: %s", pos.show(envPath, quoteShort(ref.Env)), msg))
			} else if v, ok := lookup(ref.Env); !ok {
				probs = append(probs, pos.problem(envPath, "environment variable %s is not set", ref.Env))
			} else if v == "" {
				probs = append(probs, pos.problem(envPath, "environment variable %s is empty", ref.Env))
			}
		case ref.File != "":
			if msg := checkReadable(resolvePath(base, ref.File)); msg != "" {
				probs = append(probs, pos.problem(filePath, "cannot read %s: %s", pos.show(filePath, quoteShort(ref.File)), msg))
			}
		}
	})
	return probs
}

// resolveSecretFiles makes every *_file reference absolute against base.
func resolveSecretFiles(target any, base string) {
	walkSecrets(reflect.ValueOf(target).Elem(), "", func(_ string, ref *SecretRef) {
		ref.File = resolvePath(base, ref.File)
	})
}

// resolvePath resolves a path from the config file against the file's
// directory; "" stays "" so "not set" survives.
func resolvePath(base, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// baseDir is the directory relative paths in the file named name are
// resolved against, absolute when possible so that a later chdir does not
// change what the paths mean.
func baseDir(name string) string {
	dir := filepath.Dir(name)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
