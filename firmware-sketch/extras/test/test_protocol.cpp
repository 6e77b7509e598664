// The C++ codec against the shared vectors in protocol/testdata/vectors.txt
// (format documented at the top of that file), the same vectors the Go codec
// passes. Usage: test_protocol PATH/TO/vectors.txt
#include <stdlib.h>
#include <string.h>

#include <map>

#include "plcmail_protocol.h"
#include "testing.h"

using namespace plcmail;

int testFailures;
const char* testName;

namespace {

struct Vector {
  std::string name, cls;
  std::vector<uint8_t> raw, wire;
  bool hasRaw = false;
  std::vector<std::string> expect;  // after "expect "
  int line = 0;
};

bool unhex(const char* s, std::vector<uint8_t>* out) {
  out->clear();
  size_t n = strlen(s);
  if (n % 2) return false;
  for (size_t i = 0; i < n; i += 2) {
    char b[3] = {s[i], s[i + 1], 0};
    char* end;
    unsigned long v = strtoul(b, &end, 16);
    if (*end) return false;
    out->push_back((uint8_t)v);
  }
  return true;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> t;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(' ', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) t.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return t;
}

std::vector<Vector> load(const char* path) {
  std::vector<Vector> vs;
  FILE* f = fopen(path, "r");
  if (!f) {
    perror(path);
    exit(2);
  }
  char buf[512];
  int line = 0;
  Vector cur;
  bool in = false;
  while (fgets(buf, sizeof buf, f)) {
    line++;
    size_t n = strlen(buf);
    if (n && buf[n - 1] != '\n' && !feof(f)) {
      fprintf(stderr, "%s:%d: line longer than 511 bytes\n", path, line);
      exit(2);
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    if (!n || buf[0] == '#') continue;
    std::string s(buf);
    std::vector<std::string> t = split(s);
    const std::string& kw = t[0];
    if (kw == "vector" && t.size() >= 3) {
      cur = Vector();
      cur.name = t[1];
      cur.cls = t[2];
      cur.line = line;
      in = true;
    } else if (!in) {
      fprintf(stderr, "%s:%d: %s outside a vector\n", path, line, kw.c_str());
      exit(2);
    } else if (kw == "raw" && t.size() == 2) {
      cur.hasRaw = unhex(t[1].c_str(), &cur.raw);
      CHECK(cur.hasRaw);
    } else if (kw == "wire" && t.size() == 2) {
      CHECK(unhex(t[1].c_str(), &cur.wire));
    } else if (kw == "expect") {
      cur.expect.push_back(s.substr(7));
    } else if (kw == "end") {
      vs.push_back(cur);
      in = false;
    }
    // note and later keywords: ignored
  }
  fclose(f);
  return vs;
}

const char* errorName(int e) {
  switch (e) {
    case kErrBadCOBS: return "bad-cobs";
    case kErrBadCRC: return "bad-crc";
    case kErrShort: return "short";
    case kErrTooLong: return "too-long";
    case kErrVersion: return "version";
    case kErrUnknownType: return "unknown-type";
    case kErrMalformed: return "malformed";
  }
  return "?";
}

std::string fmt(const char* f, unsigned long a, unsigned long b = 0) {
  char buf[64];
  snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

// Formats a decoded frame the way the vectors' expect lines do.
std::string formatFrame(const Frame& f) {
  std::string s = "frame" + fmt(" version=%lu", f.version) + fmt(" type=0x%02lx", f.type) +
                  fmt(" boot=%lu", f.boot) + fmt(" seq=%lu", f.seq);
  switch (f.type) {
    case kTypeHello:
      s += fmt(" uptime=%lu", f.uptime) + fmt(" reset_cause=0x%02lx", f.resetCause) +
           fmt(" active_total=%lu", f.activeTotal) + fmt(" n=%lu", f.nActive);
      for (int i = 0; i < f.nActive; i++) s += fmt(" active=%lu:%lu", f.active[i].code, f.active[i].severity);
      if (f.features) s += fmt(" features=0x%02lx", f.features);  // the vectors leave out features=0
      break;
    case kTypeEvent:
      s += fmt(" code=%lu", f.code) + fmt(" event=%lu", f.event) + fmt(" severity=%lu", f.severity) +
           fmt(" uptime=%lu", f.uptime) + fmt(" n=%lu", f.nValues);
      for (int i = 0; i < f.nValues; i++) s += fmt(" value=%lu:0x%08lx", f.values[i].kind, f.values[i].bits);
      s += fmt(" text_len=%lu", f.textLen);
      if (f.textLen) s += " text=" + hex(std::vector<unsigned char>(f.text, f.text + f.textLen));
      break;
    case kTypeHeartbeat:
      s += fmt(" uptime=%lu", f.uptime) + fmt(" active_total=%lu", f.activeTotal);
      break;
    case kTypeAck:
      s += fmt(" result=%lu", f.ackResult);
      break;
    case kTypeNak:
      s += fmt(" reason=%lu", f.nakReason);
      break;
    case kTypeDelivery:
      s += fmt(" status=%lu", f.status) + fmt(" smtp_code=%lu", f.smtpCode);
      if (f.via) s += fmt(" via=%lu", f.via);  // the vectors leave out via=0
      break;
  }
  return s;
}

std::string formatError(int err, const Frame& f) {
  std::string s = std::string("error ") + errorName(err);
  if (err == kErrVersion || err == kErrUnknownType || err == kErrMalformed)
    s += fmt(" type=0x%02lx", f.type) + fmt(" boot=%lu", f.boot) + fmt(" seq=%lu", f.seq);
  return s;
}

// Compares an expect line with ours token by token, numerically (so 0x01 and
// 1 agree), and ignores keys of the vectors we do not know.
bool sameLine(const std::string& want, const std::string& got) {
  std::vector<std::string> w = split(want), g = split(got);
  if (w.size() < 2 || g.size() < 2 || w[0] != g[0] || w[1] != g[1]) return false;
  std::map<std::string, std::vector<std::string>> gv;
  for (size_t i = (g[0] == "frame" ? 1 : 2); i < g.size(); i++) {
    size_t eq = g[i].find('=');
    gv[g[i].substr(0, eq)].push_back(g[i].substr(eq + 1));
  }
  std::map<std::string, size_t> seen;
  size_t matched = 0;
  for (size_t i = (w[0] == "frame" ? 1 : 2); i < w.size(); i++) {
    size_t eq = w[i].find('=');
    if (eq == std::string::npos) return false;
    std::string k = w[i].substr(0, eq), v = w[i].substr(eq + 1);
    auto it = gv.find(k);
    if (it == gv.end()) continue;  // a key from a later vectors format
    size_t idx = seen[k]++;
    if (idx >= it->second.size()) return false;
    std::string gvv = it->second[idx];
    matched++;
    if (k == "text") {
      if (v != gvv) return false;
      continue;
    }
    // "a" or "a:b", numbers in any strtoul base-0 form.
    const char *p = v.c_str(), *q = gvv.c_str();
    for (;;) {
      char *pe, *qe;
      unsigned long a = strtoul(p, &pe, 0), b = strtoul(q, &qe, 0);
      if (a != b || (*pe == ':') != (*qe == ':')) return false;
      if (*pe != ':') break;
      p = pe + 1;
      q = qe + 1;
    }
  }
  // Everything we produced was expected.
  size_t ours = 0;
  for (auto& kv : gv) ours += kv.second.size();
  return matched == ours;
}

// Builds a Frame from the fields of an "expect frame" line.
bool frameFromExpect(const std::string& line, Frame* f) {
  memset(f, 0, sizeof *f);
  std::vector<std::string> t = split(line);
  if (t.empty() || t[0] != "frame") return false;
  for (size_t i = 1; i < t.size(); i++) {
    size_t eq = t[i].find('=');
    std::string k = t[i].substr(0, eq), v = t[i].substr(eq + 1);
    char* end;
    unsigned long n = strtoul(v.c_str(), &end, 0);
    (void)end;
    if (k == "version") f->version = (uint8_t)n;
    else if (k == "type") f->type = (uint8_t)n;
    else if (k == "boot") f->boot = (uint32_t)n;
    else if (k == "seq") f->seq = (uint32_t)n;
    else if (k == "uptime") f->uptime = (uint32_t)n;
    else if (k == "reset_cause") f->resetCause = (uint8_t)n;
    else if (k == "active_total") f->activeTotal = (uint8_t)n;
    else if (k == "n" && f->type == kTypeHello) f->nActive = (uint8_t)n;
    else if (k == "n") f->nValues = (uint8_t)n;
    else if (k == "active" || k == "value") continue;  // second pass
    else if (k == "code") f->code = (uint16_t)n;
    else if (k == "event") f->event = (uint8_t)n;
    else if (k == "severity") f->severity = (uint8_t)n;
    else if (k == "text_len") f->textLen = (uint8_t)n;
    else if (k == "text") {
      std::vector<uint8_t> b;
      if (!unhex(v.c_str(), &b) || b.size() > kMaxText) return false;
      memcpy(f->text, b.data(), b.size());
    } else if (k == "result") f->ackResult = (uint8_t)n;
    else if (k == "reason") f->nakReason = (uint8_t)n;
    else if (k == "status") f->status = (uint8_t)n;
    else if (k == "smtp_code") f->smtpCode = (uint16_t)n;
    else if (k == "via") f->via = (uint8_t)n;
    else if (k == "features") f->features = (uint8_t)n;
  }
  // Second pass for the repeated keys, in order.
  int na = 0, nv = 0;
  for (size_t i = 1; i < t.size(); i++) {
    size_t eq = t[i].find('=');
    std::string k = t[i].substr(0, eq), v = t[i].substr(eq + 1);
    char* end;
    unsigned long a = strtoul(v.c_str(), &end, 0);
    unsigned long b = *end == ':' ? strtoul(end + 1, nullptr, 0) : 0;
    if (k == "active" && na < kMaxActive) {
      f->active[na].code = (uint16_t)a;
      f->active[na++].severity = (uint8_t)b;
    } else if (k == "value" && nv < kMaxValues) {
      f->values[nv].kind = (uint8_t)a;
      f->values[nv++].bits = (uint32_t)b;
    }
  }
  return true;
}

std::vector<std::string> decodeStream(const std::vector<uint8_t>& wire) {
  std::vector<std::string> got;
  Decoder d;
  for (uint8_t b : wire) {
    int r = d.push(b);
    if (r == Decoder::kFrameReady) {
      Frame f;
      int err = parseRaw(d.raw(), d.rawLen(), &f);
      got.push_back(err == kOK ? formatFrame(f) : formatError(err, f));
    } else if (r != kOK) {
      Frame none = {};
      got.push_back(formatError(r, none));
    }
  }
  return got;
}

// Receiver (the firmware's streaming receiver) must take exactly the frames
// that Decoder completes and checkRaw accepts, with the same length and
// first bytes, at the same byte of the stream.
bool receiverAgrees(const std::vector<uint8_t>& wire, const char* what) {
  Decoder d;
  Receiver r = Receiver();
  for (size_t i = 0; i < wire.size(); i++) {
    bool want = d.push(wire[i]) == Decoder::kFrameReady && checkRaw(d.raw(), d.rawLen()) == kOK;
    bool got = r.push(wire[i]);
    bool same = want == got;
    if (same && got) {
      uint8_t keep = d.rawLen() < Receiver::kKeep ? d.rawLen() : (uint8_t)Receiver::kKeep;
      same = r.rawLen() == d.rawLen() && memcmp(r.raw(), d.raw(), keep) == 0;
    }
    if (!same) {
      fprintf(stderr, "%s: Receiver differs from Decoder+checkRaw at byte %zu of %s (got %d, want %d)\n", what, i,
              hex(wire).c_str(), got, want);
      testFailures++;
      return false;
    }
  }
  return true;
}

void checkVector(const Vector& v) {
  testName = v.name.c_str();
  int before = testFailures;
  // 1. The receiver: the wire bytes give exactly the expect lines.
  std::vector<std::string> got = decodeStream(v.wire);
  bool same = got.size() == v.expect.size();
  for (size_t i = 0; same && i < got.size(); i++) same = sameLine(v.expect[i], got[i]);
  if (!same) {
    fprintf(stderr, "%s (line %d): decoded:\n", v.name.c_str(), v.line);
    for (auto& s : got) fprintf(stderr, "    %s\n", s.c_str());
    fprintf(stderr, "  want:\n");
    for (auto& s : v.expect) fprintf(stderr, "    %s\n", s.c_str());
    testFailures++;
  }
  // 1b. The firmware's streaming receiver agrees.
  receiverAgrees(v.wire, v.name.c_str());
  // 2. raw <-> wire through the COBS functions.
  if (v.hasRaw) {
    std::vector<uint8_t> enc(v.raw.size() + v.raw.size() / 254 + 2);
    enc.resize(cobsEncode(v.raw.data(), v.raw.size(), enc.data()));
    enc.push_back(0);
    if (enc != v.wire) {
      fprintf(stderr, "%s: cobsEncode(raw)+00 = %s, want wire %s\n", v.name.c_str(), hex(enc).c_str(),
              hex(v.wire).c_str());
      testFailures++;
    }
    std::vector<uint8_t> dec(v.wire.size());
    int n = cobsDecode(v.wire.data(), v.wire.size() - 1, dec.data());
    CHECK(n == (int)v.raw.size() && memcmp(dec.data(), v.raw.data(), v.raw.size()) == 0);
  }
  // 3. The encoder: the fields of a valid vector give exactly raw and wire,
  //    also through the firmware's in-place path.
  if (v.cls == "valid") {
    CHECK(v.hasRaw && v.expect.size() == 1);
    Frame f;
    CHECK(frameFromExpect(v.expect[0], &f));
    uint8_t raw[kMaxFrame + 2];
    uint8_t n = encodeRaw(&f, raw + 1);
    std::vector<uint8_t> got(raw + 1, raw + 1 + n);
    if (got != v.raw) {
      fprintf(stderr, "%s: encodeRaw = %s, want %s\n", v.name.c_str(), hex(got).c_str(), hex(v.raw).c_str());
      testFailures++;
    } else {
      uint8_t m = (uint8_t)(cobsEncodeInPlace(raw, raw + 1 + n) - raw);
      CHECK(std::vector<uint8_t>(raw, raw + m) == v.wire);
    }
  }
  printf("%s %s\n", testFailures == before ? "ok  " : "FAIL", v.name.c_str());
}

// The streaming receiver against Decoder + checkRaw on mangled streams:
// valid frames (of every length up to beyond kMaxFrame) with flipped bits,
// lost and extra bytes, runs of zeros, and plain noise.
void testReceiverRandom(const std::vector<Vector>& vs) {
  uint32_t seed = 12345;
  auto rnd = [&seed]() {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 8) & 0xFFFF;
  };
  int frames = 0;
  for (int round = 0; round < 3000; round++) {
    std::vector<uint8_t> wire;
    for (int k = 0; k < 6; k++) {
      std::vector<uint8_t> raw;
      int pick = rnd() % 3;
      if (pick == 0 && !vs.empty()) {
        const Vector& v = vs[rnd() % vs.size()];
        wire.insert(wire.end(), v.wire.begin(), v.wire.end());
        continue;
      }
      // A frame with a good CRC, any length 0..90, zeros likely.
      int n = rnd() % 91;
      for (int i = 0; i < n; i++) raw.push_back(rnd() % 4 == 0 ? 0 : (uint8_t)rnd());
      if (n > 0 && rnd() % 4) raw[0] = kVersion;
      if (n >= 2) {
        uint16_t crc = crc16(raw.data(), (size_t)(n - 2));
        raw[n - 2] = (uint8_t)crc;
        raw[n - 1] = (uint8_t)(crc >> 8);
      }
      std::vector<uint8_t> enc(raw.size() + raw.size() / 254 + 2);
      enc.resize(cobsEncode(raw.data(), raw.size(), enc.data()));
      enc.push_back(0);
      wire.insert(wire.end(), enc.begin(), enc.end());
    }
    // Damage.
    int hits = rnd() % 4;
    for (int h = 0; h < hits && !wire.empty(); h++) {
      size_t at = rnd() % wire.size();
      switch (rnd() % 4) {
        case 0: wire[at] ^= (uint8_t)(1 << (rnd() % 8)); break;
        case 1: wire.erase(wire.begin() + (long)at); break;
        case 2: wire.insert(wire.begin() + (long)at, 0); break;
        default: wire.insert(wire.begin() + (long)at, (uint8_t)rnd()); break;
      }
    }
    if (round % 10 == 0)
      for (int i = 0; i < 100; i++) wire.push_back(rnd() % 8 == 0 ? 0 : (uint8_t)rnd());
    if (!receiverAgrees(wire, "random")) return;
    Decoder d;
    for (uint8_t b : wire) frames += d.push(b) == Decoder::kFrameReady && checkRaw(d.raw(), d.rawLen()) == kOK;
  }
  CHECK(frames > 3000);  // the streams did carry good frames
}

void testCrcCheckValue() {
  CHECK_EQ(crc16((const uint8_t*)"123456789", 9), 0x906E);
  // The residue over data plus its CRC (low byte first).
  uint8_t b[11];
  memcpy(b, "123456789", 9);
  b[9] = 0x6E;
  b[10] = 0x90;
  uint16_t crc = 0xFFFF;
  for (uint8_t x : b) crc = crc16Update(crc, x);
  CHECK_EQ(crc, 0xF0B8);
}

void testEncoderRefusesBadFrames() {
  Frame f = {};
  uint8_t raw[kMaxFrame];
  f.version = 1;
  f.type = kTypeEvent;
  f.boot = 1;
  f.seq = 1;
  f.event = 1;
  CHECK(encodeRaw(&f, raw) > 0);
  f.textLen = kMaxText + 1;
  CHECK_EQ(encodeRaw(&f, raw), 0);
  f.textLen = 0;
  f.seq = 0;  // events need a sequence number
  CHECK_EQ(encodeRaw(&f, raw), 0);
  f.seq = 1;
  f.type = 0x44;
  CHECK_EQ(encodeRaw(&f, raw), 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s vectors.txt\n", argv[0]);
    return 2;
  }
  RUN(testCrcCheckValue);
  RUN(testEncoderRefusesBadFrames);
  std::vector<Vector> vs = load(argv[1]);
  testName = "testReceiverRandom";
  testReceiverRandom(vs);
  int valid = 0;
  for (auto& v : vs) {
    checkVector(v);
    valid += v.cls == "valid";
  }
  if (vs.size() < 10 || valid < 5) {
    fprintf(stderr, "only %zu vectors (%d valid): is %s complete?\n", vs.size(), valid, argv[1]);
    testFailures++;
  }
  if (testFailures) {
    printf("FAIL: %d check(s) failed\n", testFailures);
    return 1;
  }
  printf("PASS (%zu vectors)\n", vs.size());
  return 0;
}
