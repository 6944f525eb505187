package checkpoint

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ehrbridge/ehrbridge/internal/configvalue"
)

// TestSettingsValidate checks the section's defaults pass and each of its
// rules.
func TestSettingsValidate(t *testing.T) {
	var s Settings
	s.SetDefaults()
	var got configvalue.Problems
	s.Validate(&got)
	if len(got) != 0 || s.DedupeWindow.Std() != DefaultDedupeWindow || s.PayloadRetention.Std() != DefaultPayloadRetention || s.SweepInterval.Std() != time.Hour {
		t.Errorf("defaults %+v reported %q", s, got)
	}
	s = Settings{DedupeWindow: configvalue.Duration(time.Hour), PayloadRetention: configvalue.Duration(2 * time.Hour), Encryption: &EncryptionSettings{}}
	got = nil
	s.Validate(&got)
	want := configvalue.Problems{"sweep_interval: must be greater than 0, got 0s",
		"payload_retention: must not be longer than checkpoint.dedupe_window (1h0m0s)", "encryption: key_env or key_file is required"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%q\nwant\n%q", got, want)
	}
}

// TestSettingsApply checks that the section reaches the log's options as
// written (the daemon used to copy it field by field), the keyring
// included, and that a key that cannot be read fails without its value.
func TestSettingsApply(t *testing.T) {
	active, old := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize)
	t.Setenv("EHRB_TEST_ACTIVE", base64.StdEncoding.EncodeToString(active))
	t.Setenv("EHRB_TEST_OLD", base64.RawURLEncoding.EncodeToString(old))
	s := Settings{DedupeWindow: configvalue.Duration(48 * time.Hour), PayloadRetention: configvalue.Duration(3 * time.Hour),
		Encryption: &EncryptionSettings{Key: configvalue.SecretRef{Env: "EHRB_TEST_ACTIVE", Key: "key"},
			PreviousKeys: []KeyRef{{Key: configvalue.SecretRef{Env: "EHRB_TEST_OLD", Key: "key"}}}}}
	o := Options{Writer: "test"}
	if err := s.Apply(&o); err != nil {
		t.Fatal(err)
	}
	if o.DedupeWindow != 48*time.Hour || o.PayloadRetention != 3*time.Hour || o.Writer != "test" || o.Keyring == nil {
		t.Fatalf("options = %+v, want the windows as written, a keyring and the writer kept", o)
	}
	if id := hex8(keyID(active)); o.Keyring.ActiveKeyID() != id {
		t.Errorf("active key id = %s, want %s", o.Keyring.ActiveKeyID(), id)
	}
	if _, ok := o.Keyring.aeads[keyID(old)]; !ok {
		t.Error("the previous key is not in the keyring")
	}

	if err := (Settings{}).Apply(&o); err != nil || o.Keyring != nil {
		t.Errorf("no encryption: keyring %v, %v; want none", o.Keyring, err)
	}

	t.Setenv("EHRB_TEST_SHORT", "c2hvcnQ=")
	s.Encryption.PreviousKeys[0].Key.Env = "EHRB_TEST_SHORT"
	err := s.Apply(&o)
	if err == nil || !strings.HasPrefix(err.Error(), "checkpoint encryption previous_keys[0]: ") || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Errorf("short previous key: %v; want an error naming previous_keys[0], without the value", err)
	}
	s.Encryption.Key.Env = "EHRB_TEST_UNSET"
	if err := s.Apply(&o); err == nil || !strings.HasPrefix(err.Error(), "checkpoint encryption key: ") {
		t.Errorf("unset active key: %v", err)
	}
}

func hex8(id [8]byte) string { return fmt.Sprintf("%x", id[:]) }
