package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ehrbridge/ehrbridge/checkpoint"
	"github.com/ehrbridge/ehrbridge/internal/logadmin"
)

// logReseal seals every stored payload with the active key and compacts
// the file (checkpoint.Reseal), on a stopped log.
func logReseal(t *logTarget, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "ehrbridge log reseal: %v\n", err)
		return exitFailure
	}
	keyring, err := t.enc.Keyring()
	if err != nil {
		return fail(err)
	}
	if keyring == nil {
		return fail(errors.New("no key configured: give --config with checkpoint.encryption (the active key, and any previous keys the log was sealed with)"))
	}
	res, err := checkpoint.Reseal(t.path, checkpoint.Options{Keyring: keyring, Writer: "ehrbridge " + version + " (log reseal)",
		LockTimeout: 300 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		if errors.Is(err, checkpoint.ErrLocked) {
			return fail(errors.New("the daemon is running: stop it first (reseal rewrites the file)"))
		}
		return fail(err)
	}
	fmt.Fprintf(stdout, "resealed %s with key %s: %d record payloads and %d other values sealed anew, %d content hashes keyed, %d CRM messages moved out of dead reasons; compacted %s → %s in %s\n",
		t.path, keyring.ActiveKeyID(), res.Records, res.Others, res.Hashes, res.Reasons, humanBytes(res.Compacted.Before), humanBytes(res.Compacted.After),
		res.Took.Round(time.Millisecond))
	fmt.Fprintln(stdout, "backups taken before hold the old copies: replace them; previous keys may be removed from the config once no backup needs them")
	return exitOK
}

// printSeal adds to `log stats` what is not yet under the active key.
func printSeal(w io.Writer, s *logadmin.SealView) {
	if s == nil {
		return
	}
	if s.Unencrypted+s.OldKey+s.OtherNotSealed+s.BareHashes+s.CRMMessageReasons == 0 {
		fmt.Fprintf(w, "sealing:         all %d payloads under the active key\n", s.RecordsWithPayload)
		return
	}
	fmt.Fprintf(w, "sealing:         %d records unencrypted, %d under an old key, %d other values (conflicts, source state, CRM messages) not under the active key, %d content hashes not keyed, %d dead reasons quoting the CRM's message: run `ehrbridge log reseal` with the daemon stopped\n",
		s.Unencrypted, s.OldKey, s.OtherNotSealed, s.BareHashes, s.CRMMessageReasons)
}
