package main

import (
	"io"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestFlagUsageHasNoPlaceholderQuotes walks every command's flags: urfave/cli takes the
// first `back-quoted` word of a flag's usage as its value's placeholder, so a usage
// that quotes a command ("from `fedq info`") prints "--kernel fedq info" in the help.
// Usages say such things without back quotes.
func TestFlagUsageHasNoPlaceholderQuotes(t *testing.T) {
	var walk func(path string, cmds []*cli.Command)
	check := func(path string, flags []cli.Flag) {
		for _, f := range flags {
			d, ok := f.(cli.DocGenerationFlag)
			if !ok {
				continue
			}
			if u := d.GetUsage(); strings.Contains(u, "`") {
				t.Errorf("%s --%s: usage %q has back quotes (the help would show %q as the flag's value)", path, f.Names()[0], u, strings.Split(u, "`")[1])
			}
		}
	}
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := path + " " + c.Name
			check(p, c.Flags)
			walk(p, c.Subcommands)
		}
	}
	app := newApp(io.Discard, io.Discard)
	check("fedq", app.Flags)
	walk("fedq", app.Commands)
	if len(app.Commands) < 10 {
		t.Fatalf("only %d commands found: the walk is not seeing the app", len(app.Commands))
	}
}
