// Must NOT build: the sketch sets PLCMAIL_QUEUE_LEN with a #define, so the
// library's PlcMail.cpp (compiled with the default 4) and this file disagree
// on the object's layout. The link must fail naming plcmail_config_q8_a8_v4,
// also with LTO (the Arduino AVR core's default). extras/hosttest checks it.
// Built with -DPLCMAIL_QUEUE_LEN=8 for the whole build it is correct.
#ifndef PLCMAIL_QUEUE_LEN
#define PLCMAIL_QUEUE_LEN 8
#endif
#include <PlcMail.h>

PlcMail alarms(Serial);

void setup() {
  Serial.begin(115200);
  alarms.begin();
}

void loop() {
  if (digitalRead(2) == LOW) alarms.raise(17, PLCMAIL_ALARM);
  alarms.poll();
}
