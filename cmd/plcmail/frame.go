package main

import (
	"context"
	"errors"
)

func cmdFrame(ctx context.Context, e *env, args []string) error {
	return errors.New("frame: not implemented yet")
}
