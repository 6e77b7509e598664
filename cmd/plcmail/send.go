package main

import (
	"context"
	"errors"
)

func cmdSend(ctx context.Context, e *env, args []string) error {
	return errors.New("send: not implemented yet")
}
