package main

import (
	"context"
	"fmt"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/config"
)

// cmdCheck validates the configuration and every alarm template. Each problem
// is printed to stdout as FILE:LINE: key: message, all of them in one run,
// because fixing a config one error per run is what makes people give up.
func cmdCheck(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "check")
	if err := fs.Parse(args); err != nil {
		return usageError("check: %v", err)
	}
	if fs.NArg() > 0 {
		return usageError("check takes no arguments (use -c FILE)")
	}
	cfg, err := loadConfig(e)
	if err == nil {
		err = compileTemplates(cfg)
	}
	if err != nil {
		problems := config.AsErrors(err)
		for _, p := range problems {
			if p.File == "" {
				p.File = e.configPath
			}
			fmt.Fprintln(e.stdout, p)
		}
		fmt.Fprintf(e.stderr, "plcmail: %s: %d %s\n", e.configPath, len(problems), plural(len(problems), "problem", "problems"))
		return errSilent
	}
	fmt.Fprintf(e.stdout, "%s: ok\n", cfg.File)
	return nil
}

// compileTemplates renders every [[alarm]] template with sample data.
func compileTemplates(cfg *config.Config) error {
	_, err := alarmmail.CompileTemplates(cfg)
	return err
}
