// Host stand-in for avr-libc's EEPROM access: a byte array the tests inspect.
#ifndef FAKE_AVR_EEPROM_H
#define FAKE_AVR_EEPROM_H
#include <stdint.h>
#include <string.h>
extern uint8_t fakeEeprom[4096];
inline uint32_t eeprom_read_dword(const uint32_t* addr) {
  uint32_t v;
  memcpy(&v, fakeEeprom + (uintptr_t)addr, 4);
  return v;
}
inline void eeprom_update_dword(uint32_t* addr, uint32_t v) { memcpy(fakeEeprom + (uintptr_t)addr, &v, 4); }
#endif
