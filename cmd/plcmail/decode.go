package main

import (
	"context"
	"errors"
)

func cmdDecode(ctx context.Context, e *env, args []string) error {
	return errors.New("decode: not implemented yet")
}
