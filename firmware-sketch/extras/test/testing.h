// A few lines of test scaffolding for the host tests (no framework needed).
#ifndef PLCMAIL_TESTING_H
#define PLCMAIL_TESTING_H

#include <stdio.h>
#include <stdlib.h>

#include <string>
#include <vector>

extern int testFailures;
extern const char* testName;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__, testName, \
              #cond);                                                                \
      testFailures++;                                                                \
    }                                                                                \
  } while (0)

#define CHECK_EQ(a, b)                                                                         \
  do {                                                                                         \
    long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
    if (va_ != vb_) {                                                                          \
      fprintf(stderr, "%s:%d: %s: %s == %lld, want %s == %lld\n", __FILE__, __LINE__, testName, \
              #a, va_, #b, vb_);                                                               \
      testFailures++;                                                                          \
    }                                                                                          \
  } while (0)

#define RUN(fn)                     \
  do {                              \
    testName = #fn;                 \
    int before_ = testFailures;     \
    fn();                           \
    printf("%s %s\n", testFailures == before_ ? "ok  " : "FAIL", #fn); \
  } while (0)

inline std::string hex(const std::vector<unsigned char>& v) {
  static const char d[] = "0123456789abcdef";
  std::string s;
  for (unsigned char b : v) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

#endif
