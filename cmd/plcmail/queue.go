package main

import (
	"context"
	"errors"
)

func cmdQueue(ctx context.Context, e *env, args []string) error {
	return errors.New("queue: not implemented yet")
}
