// An Arduino Client over a POSIX TCP socket, so the host tests run the SMTP
// client against real servers on 127.0.0.1.
#ifndef POSIX_CLIENT_H
#define POSIX_CLIENT_H

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "Client.h"

class PosixClient : public Client {
 public:
  std::string sent;  // everything written, for the tests to inspect

  ~PosixClient() override { stop(); }
  int connect(IPAddress ip, uint16_t port) override {
    char host[16];
    snprintf(host, sizeof host, "%u.%u.%u.%u", ip.o[0], ip.o[1], ip.o[2], ip.o[3]);
    return connect(host, port);
  }
  int connect(const char* host, uint16_t port) override {
    stop();
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    addrinfo hints = {}, *res;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, ps, &hints, &res) != 0) return 0;
    for (addrinfo* a = res; a; a = a->ai_next) {
      fd_ = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd_ < 0) continue;
      if (::connect(fd_, a->ai_addr, a->ai_addrlen) == 0) break;
      close(fd_);
      fd_ = -1;
    }
    freeaddrinfo(res);
    eof_ = false;
    return fd_ >= 0;
  }
  size_t write(uint8_t b) override { return write(&b, 1); }
  size_t write(const uint8_t* buf, size_t n) override {
    if (fd_ < 0) return 0;
    sent.append((const char*)buf, n);
    size_t done = 0;
    while (done < n) {
      ssize_t k = send(fd_, buf + done, n - done, MSG_NOSIGNAL);
      if (k <= 0) return done;
      done += k;
    }
    writes++;
    return done;
  }
  int available() override {
    fill();
    return (int)(len_ - pos_);
  }
  int read() override {
    if (!available()) return -1;
    return rbuf_[pos_++];
  }
  int read(uint8_t* buf, size_t n) override {
    size_t k = 0;
    while (k < n && available()) buf[k++] = rbuf_[pos_++];
    return (int)k;
  }
  int peek() override { return available() ? rbuf_[pos_] : -1; }
  void flush() override {}
  void stop() override {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    pos_ = len_ = 0;
  }
  uint8_t connected() override {
    fill();
    return fd_ >= 0 && (!eof_ || pos_ < len_);
  }
  operator bool() override { return fd_ >= 0; }
  int writes = 0;  // send() calls, to check that output is buffered

 private:
  void fill() {
    if (fd_ < 0 || eof_ || pos_ < len_) return;
    pos_ = len_ = 0;
    ssize_t k = recv(fd_, rbuf_, sizeof rbuf_, MSG_DONTWAIT);
    if (k > 0)
      len_ = (size_t)k;
    else if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
      eof_ = true;
    else
      usleep(200);  // nothing yet: do not spin a core while waiting
  }
  int fd_ = -1;
  bool eof_ = false;
  uint8_t rbuf_[512];
  size_t pos_ = 0, len_ = 0;
};

#endif
