package main

import (
	"context"
	"fmt"
	"io"

	"github.com/plcmail/plcmail/alarmmail"
	"github.com/plcmail/plcmail/config"
)

// cmdCheck validates the configuration and every alarm template. Each problem
// is printed to stdout as FILE:LINE: key: message, all of them in one run,
// because fixing a config one error per run is what makes people give up.
func cmdCheck(ctx context.Context, e *env, args []string) error {
	fs := subFlags(e, "check")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("check takes no arguments (use -c FILE)")
	}
	cfg, _, problems := loadChecked(e.configPath)
	var warnings config.Errors
	if cfg != nil {
		// This box, beyond the file (checkhost.go): what serve as the
		// gateway's user will open, and where it will listen.
		if su, ok := findServiceUser(cfg); ok {
			problems = problems.Merge(checkServiceUserAccess(cfg, su))
		}
		warnings = listenWarnings(cfg, localAddrs()).Merge(deviceWarnings(cfg)).Merge(cfg.Warnings())
	}
	printProblems(e.stdout, e.configPath, warnings)
	if len(problems) > 0 {
		printProblems(e.stdout, e.configPath, problems)
		fmt.Fprintf(e.stderr, "plcmail: %s: %d %s\n", e.configPath, len(problems), plural(len(problems), "problem", "problems"))
		return errSilent
	}
	fmt.Fprintf(e.stdout, "%s: ok\n", cfg.File)
	return nil
}

// loadChecked loads the configuration at path and compiles its templates,
// the checks check runs and serve (and a reload) must pass: every problem of
// both steps comes back in one list, in line order. Templates are tried even
// when the configuration has problems, as long as it could be decoded, so
// that a template error does not wait for the next run to show. cfg and tmpl
// are usable only when problems is empty.
func loadChecked(path string) (cfg *config.Config, tmpl *alarmmail.Templates, problems config.Errors) {
	cfg, problems = config.LoadAll(path)
	if cfg == nil {
		return nil, nil, problems
	}
	tmpl, err := alarmmail.CompileTemplates(cfg)
	if err != nil {
		problems = problems.Merge(config.AsErrors(err))
	}
	return cfg, tmpl, problems
}

// printProblems writes one FILE:LINE: key: message line per problem.
func printProblems(w io.Writer, path string, problems config.Errors) {
	for _, p := range problems {
		if p.File == "" {
			p.File = path
		}
		fmt.Fprintln(w, p)
	}
}

// compileTemplates renders every [[alarm]] template with sample data.
func compileTemplates(cfg *config.Config) error {
	_, err := alarmmail.CompileTemplates(cfg)
	return err
}
