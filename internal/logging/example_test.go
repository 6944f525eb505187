package logging_test

import (
	"errors"
	"log/slog"
	"os"

	"github.com/ehrbridge/ehrbridge/internal/logging"
)

func ExampleNewRedactingHandler() {
	// Dropping the time only makes the output reproducible.
	inner := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	key := []byte("example-key-not-for-production")
	log := slog.New(logging.NewRedactingHandler(inner, logging.RedactOptions{HashKey: key}))

	log.Info("message rejected",
		"source", "lab-a",
		"msg_type", "ADT",
		"patient", "DOE^JOHN",
		"record", logging.Key("lab-a|SEND|FAC|MSG00001"),
		"segments", 7,
		"err", errors.New("PID|1||12345^^^HOSP^MR"),
	)
	// Output:
	// level=INFO msg="message rejected" source=lab-a msg_type=ADT patient=[redacted] record=k_89bbf56576dd75f2 segments=7 err="[redacted: error text contained message data]"
}
