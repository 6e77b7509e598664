// Runs PlcMailSmtp once through a real TCP socket and prints the result; the
// scenarios (servers answering errors at each step, real aiosmtpd, the
// plcmail listener) are driven by run_smtp_tests.py and the Go test.
//
// usage: test_smtp HOST PORT FROM TO SUBJECT BODYFILE [TIMEOUT_MS] [--writer] [--date=DATE]
// prints: step=NAME code=N writes=N ms=N rejected=N
#include <time.h>

#include "PlcMailSmtp.h"
#include "posix_client.h"

uint32_t millis() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)(ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static std::string body;

static void writeBody(Print& out) {
  // Byte by byte through print(char), as a sketch printing values would.
  for (char c : body) out.print(c);
}

int main(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: %s HOST PORT FROM TO SUBJECT BODYFILE [TIMEOUT_MS] [--writer]\n", argv[0]);
    return 2;
  }
  FILE* f = fopen(argv[6], "rb");
  if (!f) {
    perror(argv[6]);
    return 2;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) body.append(buf, n);
  fclose(f);
  PosixClient client;
  PlcMailSmtp smtp(client);
  smtp.setHeloName("plc-test");
  if (argc > 7) {
    smtp.setTimeout((uint32_t)atol(argv[7]));
    smtp.setFinalTimeout((uint32_t)atol(argv[7]));
  }
  bool writer = false;
  for (int i = 8; i < argc; i++) {
    if (strcmp(argv[i], "--writer") == 0) writer = true;
    if (strncmp(argv[i], "--date=", 7) == 0) smtp.setDate(argv[i] + 7);
  }
  const char* subject = strcmp(argv[5], "-") == 0 ? nullptr : argv[5];
  uint32_t t0 = millis();
  uint8_t step = writer ? smtp.send(argv[1], (uint16_t)atoi(argv[2]), argv[3], argv[4], subject, writeBody)
                        : smtp.send(argv[1], (uint16_t)atoi(argv[2]), argv[3], argv[4], subject, body.c_str());
  printf("step=%s code=%u writes=%d ms=%u rejected=%u\n", (const char*)PlcMailSmtp::stepName(step), smtp.code(),
         client.writes, millis() - t0, smtp.rejected());
  return 0;
}
