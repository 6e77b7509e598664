package main

import (
	"context"
	"errors"
)

func cmdVersion(ctx context.Context, e *env, args []string) error {
	return errors.New("version: not implemented yet")
}
