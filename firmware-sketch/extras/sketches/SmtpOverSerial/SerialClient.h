// A Client over a serial port, for the simulator: the simavr harness bridges
// the UART to a TCP connection it opens at start, so connect() has nothing to
// do. Real boards use EthernetClient instead.
#ifndef SERIAL_CLIENT_H
#define SERIAL_CLIENT_H
#include <Client.h>

class SerialClient : public Client {
 public:
  explicit SerialClient(HardwareSerial& s) : s_(s), open_(false) {}
  int connect(IPAddress, uint16_t) override { return open_ = true; }
  int connect(const char*, uint16_t) override { return open_ = true; }
  size_t write(uint8_t b) override { return s_.write(b); }
  size_t write(const uint8_t* buf, size_t n) override { return s_.write(buf, n); }
  int available() override { return s_.available(); }
  int read() override { return s_.read(); }
  int read(uint8_t* buf, size_t n) override { return s_.readBytes(buf, n); }
  int peek() override { return s_.peek(); }
  void flush() override { s_.flush(); }
  void stop() override { open_ = false; }
  uint8_t connected() override { return open_; }
  operator bool() override { return open_; }

 private:
  HardwareSerial& s_;
  bool open_;
};
#endif
