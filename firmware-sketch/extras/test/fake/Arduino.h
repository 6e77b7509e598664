// Minimal stand-in for the Arduino core so the library compiles with host g++
// for tests. Only what PlcMail and PlcMailSmtp use; behaviour follows the AVR
// core (Print::write(buf, n) loops over write(byte), flush() waits for the
// line). The clock, pins, EEPROM and MCUSR are plain variables the tests set.
#ifndef FAKE_ARDUINO_H
#define FAKE_ARDUINO_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

// Each test program defines the clock: a variable it advances (sender tests)
// or the real monotonic clock (SMTP tests against real servers).
uint32_t millis();

#define HIGH 1
#define LOW 0
#define OUTPUT 1
#define INPUT 0
extern uint8_t fakePins[128];
extern uint8_t fakePinModes[128];
inline void pinMode(uint8_t pin, uint8_t mode) { fakePinModes[pin] = mode; }
inline void digitalWrite(uint8_t pin, uint8_t v) { fakePins[pin] = v; }

// Flash strings are ordinary strings on the host.
class __FlashStringHelper;
#define F(s) (reinterpret_cast<const __FlashStringHelper*>(s))
#define PSTR(s) (s)
#define PROGMEM
#define pgm_read_byte(p) (*(const uint8_t*)(p))
#define strlen_P strlen
#define strncmp_P strncmp

// AVR registers and EEPROM the library touches.
extern uint8_t fakeMCUSR;
// The entropy PlcMail::begin() gets for an erased EEPROM cell, and its RAM
// block that survives a warm reset (.noinit on AVR).
extern uint32_t fakeEntropy;
struct PlcMailBootBlock;
extern PlcMailBootBlock fakeBootBlock;
#define MCUSR fakeMCUSR
#define E2END 0xFFF
#define PLCMAIL_FAKE_AVR 1  // use <avr/eeprom.h> (the fake in fake/avr/)

class Print {
 public:
  virtual ~Print() {}
  virtual size_t write(uint8_t) = 0;
  virtual size_t write(const uint8_t* buf, size_t n) {
    size_t k = 0;
    while (n--) {
      if (!write(*buf++)) break;
      k++;
    }
    return k;
  }
  size_t write(const char* s) { return write((const uint8_t*)s, strlen(s)); }
  virtual void flush() {}
  size_t print(const char* s) { return write(s); }
  size_t print(const __FlashStringHelper* s) { return write((const char*)s); }
  size_t print(char c) { return write((uint8_t)c); }
  size_t print(unsigned long v) {
    char b[12];
    snprintf(b, sizeof b, "%lu", v);
    return write(b);
  }
  size_t print(unsigned int v) { return print((unsigned long)v); }
  size_t print(long v) {
    char b[12];
    snprintf(b, sizeof b, "%ld", v);
    return write(b);
  }
  size_t print(int v) { return print((long)v); }
  size_t println() { return write("\r\n"); }
  size_t println(const char* s) { return print(s) + println(); }
  size_t println(const __FlashStringHelper* s) { return print(s) + println(); }
};

class Stream : public Print {
 public:
  virtual int available() = 0;
  virtual int read() = 0;
  virtual int peek() = 0;
};

#endif
