package channel

import (
	"context"
	"errors"
	"fmt"

	"github.com/plcmail/plcmail/mqtt"
)

// MQTTPublish adapts the gateway's broker connection to Channel.Publish:
// QoS 1, acknowledged by the broker; a topic the client refuses is a
// permanent failure, every other error is retried.
func MQTTPublish(c *mqtt.Client) func(ctx context.Context, topic string, payload []byte) error {
	return func(ctx context.Context, topic string, payload []byte) error {
		err := c.Publish(ctx, topic, payload)
		if errors.Is(err, mqtt.ErrBadTopic) {
			return fmt.Errorf("%w: %w", ErrPermanent, err)
		}
		return err
	}
}
