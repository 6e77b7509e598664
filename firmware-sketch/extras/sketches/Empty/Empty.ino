// Size reference: the Arduino core alone.
void setup() {}
void loop() {}
