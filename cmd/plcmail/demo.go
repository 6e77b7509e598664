package main

import (
	"context"
	"errors"
)

func cmdDemo(ctx context.Context, e *env, args []string) error {
	return errors.New("demo: not implemented yet")
}
