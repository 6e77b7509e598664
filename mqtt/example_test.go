package mqtt_test

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/plcmail/plcmail/mqtt"
)

// A fallback channel publishes an alarm and keeps it (in the spool) until
// the broker has acknowledged it; ErrBadTopic alone is not worth a retry.
func ExampleClient_Publish() {
	c, err := mqtt.New(mqtt.Options{
		Broker:     "mqtts://broker.example.com",
		ClientID:   "plcmail-gw1",
		StateTopic: "plcmail/gw1/state",
		QoS:        1,
	}, slog.Default())
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go c.Run(ctx) // connects, and again after every break, until ctx ends

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = c.Publish(pctx, "plcmail/gw1/alarm", []byte(`{"id":"1g7s42","code":17}`))
	switch {
	case err == nil:
		// acknowledged: mark the delivery done
	case errors.Is(err, mqtt.ErrBadTopic):
		// permanent: give up on this message
	default:
		// not connected, timed out, connection lost: try again later
	}
}
