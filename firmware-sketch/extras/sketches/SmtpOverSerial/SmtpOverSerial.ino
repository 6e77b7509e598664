// PlcMailSmtp on the simulated chip: one mail through a Client on a UART
// (Serial1 on the ATmega2560, Serial on the 328P), which the simavr harness
// bridges to an SMTP server's TCP port. The result goes to Serial (UART0) as
// "SMTP step=N code=N". Built with -DPLCMAIL_SIZE_BASELINE it leaves the
// mail out: the difference between the two builds is the SMTP client's cost.
#include <PlcMailSmtp.h>

#include "SerialClient.h"

#if defined(UBRR1H)
#define MAIL_PORT Serial1
#else
#define MAIL_PORT Serial
#endif

SerialClient client(MAIL_PORT);

void body(Print& out) {
  out.print(F("Tank 2 level "));
  out.print(millis());
  out.print(F(" ms after boot.\n.hidden dot line\nend\n"));
}

void setup() {
  Serial.begin(115200);
  MAIL_PORT.begin(115200);
#if !defined(PLCMAIL_SIZE_BASELINE)
  PlcMailSmtp smtp(client);
  smtp.setHeloName("plc-sim");
  smtp.setTimeout(5000);
  uint8_t step = smtp.send(IPAddress(127, 0, 0, 1), 25, "plc@example.com", "ops@example.com",
                           "Tank 2 level high", body);
  Serial.print(F("SMTP step="));
  Serial.print(PlcMailSmtp::stepName(step));
  Serial.print(F(" code="));
  Serial.println(smtp.code());
#else
  client.connect(IPAddress(127, 0, 0, 1), 25);
  while (client.available()) Serial.write(client.read());
  client.write((const uint8_t*)"QUIT\r\n", 6);
  client.stop();
#endif
}

void loop() {}
