// Test sketch (ATmega2560 only): the protocol on Serial (UART0), and every
// status the library reports printed on Serial1 (UART1) as one line
// "STATUS <what> <seq> <detail>", for hosttest's TestSimulatedDeliveryVia
// and TestSimulatedChannelsThroughGateway.
// It uses only what every release of the library has (onStatus and the
// numeric status values), so the same sketch builds against the library as
// it was before DELIVERY's via byte (SPEC.md 3.6).
#include <PlcMail.h>

PlcMail alarms(Serial);

void status(uint8_t what, uint32_t seq, uint16_t detail) {
  Serial1.print(F("STATUS "));
  Serial1.print(what);
  Serial1.print(' ');
  Serial1.print(seq);
  Serial1.print(' ');
  Serial1.println(detail);
}

void setup() {
  Serial.begin(115200);
  Serial1.begin(115200);
  alarms.onStatus(status);
  alarms.begin();
  alarms.raise(17, PLCMAIL_ALARM);  // in the HELLO's snapshot
  pinMode(2, INPUT);                // PE4, driven by plcsim ("pin E4 1")
}

void loop() {
  alarms.poll();
  // Pin 2 high raises alarm 18, critical, once: an EVENT after the HELLO,
  // which a gateway's [[channel]] with severity_at_least carries at once.
  static bool raised;
  if (!raised && digitalRead(2)) {
    raised = true;
    alarms.raise(18, PLCMAIL_CRITICAL);
  }
}
