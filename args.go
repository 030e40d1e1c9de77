package main

import "flag"

// parseArgs parses args with fs and returns the positional arguments. Unlike
// fs.Parse, which stops at the first non-flag argument, it accepts flags
// before, between and after positional arguments and subcommands, so that
// `uims keys export web --out F` and `uims keys --out F export web` mean the
// same. A "--" ends the flags: everything after it is positional (for a
// message text that starts with '-': uims send --from a --to b -- "-5 °C").
// Errors follow fs's ErrorHandling.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parse parses the command's arguments (parseArgs) and returns the
// positional ones.
func (o *opts) parse(args []string) []string {
	pos, err := parseArgs(o.fs, args)
	if err != nil { // only with ContinueOnError; newOpts uses ExitOnError
		o.fs.Usage()
	}
	return pos
}
