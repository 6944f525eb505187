package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ehrbridge/ehrbridge/hl7"
	"github.com/ehrbridge/ehrbridge/internal/workbench"
)

func cmdHL7(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: ehrbridge hl7 show FILE | ehrbridge hl7 get FILE PATH...")
		return exitUsage
	}
	switch args[0] {
	case "show":
		return cmdHL7Show(args[1:], stdout, stderr)
	case "get":
		return cmdHL7Get(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "ehrbridge hl7: unknown subcommand %q (want show or get)\n", args[0])
	return exitUsage
}

// readMessages reads every message in file: LF or CRLF line ends, a byte
// order mark, several messages and HL7 batches are all accepted.
func readMessages(file string) ([]*hl7.Message, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	parts, err := hl7.Split(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	msgs := make([]*hl7.Message, 0, len(parts))
	for i, p := range parts {
		m, err := hl7.Parse(p)
		if err != nil {
			return nil, fmt.Errorf("%s: message %d: %w", file, i+1, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

func cmdHL7Show(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hl7 show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	text := fs.Bool("text", false, "render formatting escapes (\\.br\\ as a line break) instead of showing them")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge hl7 show [--text] FILE")
		fmt.Fprintln(stderr, "Prints every populated value with the path that addresses it in mappings and hl7 get,")
		fmt.Fprintln(stderr, "and the name the message's HL7 version (MSH-12) gives it; \"-\" for a Z segment.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	msgs, err := readMessages(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge hl7 show: %v\n", err)
		return exitFailure
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for i, m := range msgs {
		if len(msgs) > 1 {
			if i > 0 {
				fmt.Fprintln(tw)
			}
			fmt.Fprintf(tw, "# message %d of %d\n", i+1, len(msgs))
		}
		t := workbench.HL7Tree(m)
		if t.NamesNote != "" {
			// Not the message's own version: say whose names these are.
			fmt.Fprintf(tw, "# %s\n", t.NamesNote)
		}
		for _, n := range t.Leaves() {
			s := n.Value
			if *text {
				if n.Text != nil {
					s = *n.Text
				}
				s = strings.ReplaceAll(s, "\n", `\n`)
			}
			if n.Null {
				s = `"" (explicit null)`
			}
			name := "-"
			if n.Name != "" {
				name = shorten(n.Name, maxNameWidth)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Path, name, s)
		}
	}
	tw.Flush()
	return exitOK
}

// maxNameWidth keeps the name column of hl7 show readable: a few
// subcomponent names run to 90 characters.
const maxNameWidth = 48

// shorten cuts s to at most n runes, marking the cut with "...".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}

func cmdHL7Get(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hl7 get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	msgNo := fs.Int("message", 1, "which message of the file to read (1-based)")
	text := fs.Bool("text", false, "render formatting escapes (\\.br\\ as a line break)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ehrbridge hl7 get [--message N] [--text] FILE PATH...")
		fmt.Fprintln(stderr, "Prints each decoded value on its own line, an empty line when absent.")
		fmt.Fprintln(stderr, "Paths: PID-5.1  PID-3[2].1  PID-3.4.2  OBX[2]-5  MSH-9.2")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return exitUsage
	}
	paths := make([]hl7.Path, 0, fs.NArg()-1)
	for _, a := range fs.Args()[1:] {
		p, err := hl7.ParsePath(a)
		if err != nil {
			fmt.Fprintf(stderr, "ehrbridge hl7 get: %v\n", err)
			return exitUsage
		}
		paths = append(paths, p)
	}
	msgs, err := readMessages(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "ehrbridge hl7 get: %v\n", err)
		return exitFailure
	}
	if *msgNo < 1 || *msgNo > len(msgs) {
		fmt.Fprintf(stderr, "ehrbridge hl7 get: --message %d: the file holds %d message(s)\n", *msgNo, len(msgs))
		return exitUsage
	}
	m := msgs[*msgNo-1]
	for _, p := range paths {
		v := m.Get(p)
		if *text {
			fmt.Fprintln(stdout, v.Text())
		} else {
			fmt.Fprintln(stdout, v.String())
		}
	}
	return exitOK
}
