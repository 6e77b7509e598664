package alarmmail

import (
	"fmt"
	htmltemplate "html/template"
	"reflect"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

// templateMethods are the methods a template may call, besides the fields
// of AlarmData, Entry and Value: time.Time's and time.Duration's, and String.
//
// The Makefile's builds (`make openwrt`, `make cross`, `make build`) link a
// text/template that can call only these (deploy/tmplmethods: a method looked up by a name known
// only at run time keeps every method of every type in the binary, 1.4 MB
// on MIPS). checkNames holds every build to the same rule, so that `plcmail
// check` on a PC accepts exactly the templates the router can run.
var templateMethods = []string{
	// time.Time
	"Format", "IsZero", "UTC", "Local", "Unix", "Year", "Month", "Day", "Hour", "Minute", "Second", "Weekday",
	// time.Duration
	"Hours", "Minutes", "Seconds", "Milliseconds", "Round", "Truncate",
	// anything with one, Value included
	"String",
}

// dataNames are the names a template may use after a dot.
var dataNames = func() map[string]bool {
	names := map[string]bool{}
	for _, m := range templateMethods {
		names[m] = true
	}
	for _, v := range []any{AlarmData{}, Entry{}, Value{}} {
		t := reflect.TypeOf(v)
		for i := range t.NumField() {
			if f := t.Field(i); f.IsExported() {
				names[f.Name] = true
			}
		}
	}
	return names
}()

// checkNames reports the first name in trees that is neither a field of
// the mail data nor one of templateMethods, located ("alarm[0].body:1:2:"),
// in branches that sample data does not reach as well.
func checkNames(trees ...*parse.Tree) error {
	for _, tree := range trees {
		if tree == nil || tree.Root == nil {
			continue
		}
		if err := checkTree(tree); err != nil {
			return err
		}
	}
	return nil
}

func checkTree(tree *parse.Tree) error {
	var bad error
	check := func(n parse.Node, idents []string) {
		for _, id := range idents {
			if !dataNames[id] && bad == nil {
				loc, _ := tree.ErrorContext(n)
				bad = fmt.Errorf("%s: .%s: not a field of the mail data, nor one of the methods templates may call (%s)",
					loc, id, strings.Join(slices.Sorted(slices.Values(templateMethods)), ", "))
			}
		}
	}
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n != nil {
				for _, c := range n.Nodes {
					walk(c)
				}
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.IfNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.Pipe)
			walk(n.List)
			walk(n.ElseList)
		case *parse.TemplateNode:
			walk(n.Pipe)
		case *parse.PipeNode:
			if n != nil {
				for _, c := range n.Cmds {
					walk(c)
				}
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a)
			}
		case *parse.FieldNode:
			check(n, n.Ident)
		case *parse.VariableNode:
			check(n, n.Ident[1:])
		case *parse.ChainNode:
			walk(n.Node)
			check(n, n.Field)
		}
	}
	walk(tree.Root)
	return bad
}

// trees returns the parse trees of tmpls (text or html templates: a parsed
// template holds one per {{define}}).
func trees[T interface {
	*template.Template | *htmltemplate.Template
}](tmpls []T) []*parse.Tree {
	var out []*parse.Tree
	for _, t := range tmpls {
		switch t := any(t).(type) {
		case *template.Template:
			out = append(out, t.Tree)
		case *htmltemplate.Template:
			out = append(out, t.Tree)
		}
	}
	return out
}
