package config

import (
	"fmt"
	"strings"
)

// expandEnv expands ${NAME}, ${NAME:-default} and $$ in one scalar value.
// fromEnv reports whether any reference was expanded, so callers can keep
// environment values out of messages. Each entry of errs is a complete
// message; out is meaningless when errs is not empty.
func expandEnv(s string, lookup func(string) (string, bool)) (out string, fromEnv bool, errs []string) {
	if !strings.Contains(s, "$") {
		return s, false, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				errs = append(errs, `malformed environment reference: "${" without a closing "}"`)
				return "", fromEnv, errs
			}
			body := s[i+2 : i+2+end]
			i += 2 + end + 1
			name, def, hasDef := strings.Cut(body, ":-")
			if msg := checkEnvName(name); msg != "" {
				if strings.ContainsAny(name, ":-=?+") {
					// Other shell operators are not supported.
					msg += " (write a default as ${NAME:-default})"
				}
				errs = append(errs, fmt.Sprintf("malformed environment reference %q: %s", "${"+body+"}", msg))
				continue
			}
			fromEnv = true
			val, ok := lookup(name)
			switch {
			case hasDef && val == "":
				// Shell semantics: ":-" covers set-but-empty too, which is
				// what an operator blanking a variable expects.
				val = def
			case !ok:
				errs = append(errs, fmt.Sprintf("environment variable %s is not set (use ${%s:-default} to give a default)", name, name))
				continue
			}
			b.WriteString(val)
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), fromEnv, errs
}

// checkEnvName returns why name is not a portable environment variable name,
// or "" if it is one.
func checkEnvName(name string) string {
	if name == "" {
		return "empty variable name"
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9':
			if i == 0 {
				return "a variable name cannot start with a digit"
			}
		default:
			return `a variable name has only letters, digits and "_"`
		}
	}
	return ""
}
