// Host tests of the PlcMail sender's state machine against a fake Stream and a
// fake clock: what goes on the line is decoded with the codec (which
// test_protocol.cpp checks against the shared vectors) and compared field by
// field.
#include <deque>
#include <set>

#include "PlcMail.h"
#include "testing.h"

using namespace plcmail;

int testFailures;
const char* testName;
uint32_t fakeMillis;
uint8_t fakePins[128];
uint8_t fakePinModes[128];
uint8_t fakeMCUSR;
uint8_t fakeEeprom[4096];
uint32_t fakeEntropy;
PlcMailBootBlock fakeBootBlock;
uint32_t millis() { return fakeMillis; }

namespace {

// FakeLink is the serial port: bytes written by the sender are collected and
// split into frames; bytes for the sender are queued in `in`.
class FakeLink : public Stream {
 public:
  std::vector<uint8_t> out;
  std::deque<uint8_t> in;
  int flushes = 0;
  bool txEnabled = true;        // what the direction control says
  bool wroteWhileRx = false;    // a byte left while the driver was off
  bool directionControlled = false;

  size_t write(uint8_t b) override {
    if (directionControlled && !txEnabled) wroteWhileRx = true;
    out.push_back(b);
    return 1;
  }
  void flush() override { flushes++; }
  int available() override { return (int)in.size(); }
  int read() override {
    if (in.empty()) return -1;
    int c = in.front();
    in.pop_front();
    return c;
  }
  int peek() override { return in.empty() ? -1 : in.front(); }

  // Decodes and removes every complete frame written so far.
  std::vector<Frame> frames(std::vector<std::vector<uint8_t>>* raw = nullptr) {
    std::vector<Frame> fs;
    std::vector<uint8_t> cur;
    for (uint8_t b : out) {
      if (b != 0) {
        cur.push_back(b);
        continue;
      }
      if (cur.empty()) continue;
      uint8_t dec[kMaxEncoded];
      int n = cobsDecode(cur.data(), cur.size(), dec);
      Frame f;
      if (n < 0 || parseRaw(dec, (uint8_t)n, &f) != kOK) {
        fprintf(stderr, "%s: undecodable frame %s\n", testName, hex(cur).c_str());
        testFailures++;
      } else {
        fs.push_back(f);
        if (raw) raw->push_back(cur);
      }
      cur.clear();
    }
    CHECK(cur.empty());  // every frame ends with its delimiter
    out.clear();
    return fs;
  }

  // Queues a gateway frame for the sender.
  void reply(const Frame& f) {
    uint8_t raw[kMaxFrame], enc[kMaxEncoded + 1];
    uint8_t n = encodeRaw(&f, raw);
    CHECK(n > 0);
    size_t m = cobsEncode(raw, n, enc);
    in.insert(in.end(), enc, enc + m);
    in.push_back(0);
  }
  // Queues a gateway frame of any content, valid or not (encodeRaw refuses
  // what validate() calls malformed): type, boot, seq, payload, right CRC.
  void replyRaw(uint8_t type, uint32_t boot, uint32_t seq, const std::vector<uint8_t>& payload) {
    uint8_t raw[kMaxFrame], enc[kMaxEncoded + 1];
    FrameWriter w(raw, sizeof raw);
    w.header(type, boot, seq);
    w.bytes(payload.data(), (uint8_t)payload.size());
    uint8_t n = w.finish();
    CHECK(n > 0);
    size_t m = cobsEncode(raw, n, enc);
    in.insert(in.end(), enc, enc + m);
    in.push_back(0);
  }
  void ack(uint32_t boot, uint32_t seq, uint8_t result = 0) {
    Frame f = {};
    f.version = 1;
    f.type = kTypeAck;
    f.boot = boot;
    f.seq = seq;
    f.ackResult = result;
    reply(f);
  }
  void nak(uint32_t boot, uint32_t seq, uint8_t reason) {
    Frame f = {};
    f.version = 1;
    f.type = kTypeNak;
    f.boot = boot;
    f.seq = seq;
    f.nakReason = reason;
    reply(f);
  }
};

struct Status {
  uint8_t status;
  uint32_t seq;
  uint16_t detail;
};
std::vector<Status> statuses;
void onStatus(uint8_t status, uint32_t seq, uint16_t detail) { statuses.push_back({status, seq, detail}); }

// Runs poll() every 10 ms up to `until` (absolute fake time).
void runUntil(PlcMail& pm, uint32_t until) {
  while (fakeMillis < until) {
    fakeMillis += 10;
    pm.poll();
  }
}

// Starts pm with boot id `boot`, sends its HELLO (left in link.out) and lets
// it take the ACK: the next raise() is sequence 2 and goes out at the next poll.
void beginAcked(PlcMail& pm, FakeLink& link, uint32_t boot) {
  pm.begin(boot, 0);
  pm.poll();
  link.ack(boot, 1);
  pm.poll();
}

void reset() {
  fakeMillis = 1000;
  statuses.clear();
  memset(fakePins, 0, sizeof fakePins);
}

void testHelloCarriesBootSnapshot() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.begin(7, 1);
  CHECK_EQ(pm.raise(17, PLCMAIL_ALARM, 3.5f), 0);  // before the first poll: snapshot
  CHECK_EQ(pm.raise(4, PLCMAIL_WARNING), 0);
  CHECK_EQ(pm.clear(4), 0);
  CHECK(link.out.empty());
  pm.poll();
  CHECK(link.out.size() > 2 && link.out[0] == 0);  // leading delimiter
  auto fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  const Frame& h = fs[0];
  CHECK_EQ(h.type, kTypeHello);
  CHECK_EQ(h.boot, 7);
  CHECK_EQ(h.seq, 1);
  CHECK_EQ(h.resetCause, 1);
  CHECK_EQ(h.activeTotal, 1);
  CHECK_EQ(h.nActive, 1);
  CHECK_EQ(h.active[0].code, 17);
  CHECK_EQ(h.active[0].severity, PLCMAIL_ALARM);
  // features (SPEC.md 3.1): the library understands DELIVERY's via, so the
  // gateway sends it the DELIVERYs of fallback channels.
  CHECK_EQ(h.features, kFeatureVia);
  CHECK(pm.isActive(17));
  CHECK(!pm.isActive(4));
}

void testRetransmitBackoffSameBytes() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.begin(9, 0);
  pm.poll();
  std::vector<std::vector<uint8_t>> first;
  link.frames(&first);
  // Record the time of every retransmission for 120 s without an ACK.
  std::vector<uint32_t> times;
  uint32_t start = fakeMillis;
  while (fakeMillis < start + 120000) {
    fakeMillis += 10;
    pm.poll();
    std::vector<std::vector<uint8_t>> raw;
    auto fs = link.frames(&raw);
    for (size_t i = 0; i < fs.size(); i++) {
      if (fs[i].type == kTypeHeartbeat) continue;
      CHECK(raw[i] == first[0]);  // the very same bytes
      times.push_back(fakeMillis);
    }
  }
  uint32_t want = 1000, prev = start;
  CHECK(times.size() >= 6);
  for (uint32_t t : times) {
    uint32_t gap = t - prev;
    if (gap < want || gap > want + want / 4 + 10) {
      fprintf(stderr, "%s: retransmission after %u ms, want %u..%u\n", testName, gap, want, want + want / 4);
      testFailures++;
    }
    prev = t;
    want = want * 2 > 30000 ? 30000 : want * 2;
  }
}

// Two PLCs restarted by one power cut, with random-start boot ids that
// differ only in their high half (SPEC.md 4; begin() keeps bit 0 set and
// the low bits nearly equal): their jitter differs, so they do not
// retransmit in step.
void testJitterDiffersBetweenBoards() {
  reset();
  FakeLink linkA, linkB;
  PlcMail a(linkA), b(linkB);
  a.begin(0x12348001, 1);
  b.begin(0x5AB08001, 1);
  std::vector<uint32_t> ta, tb;
  uint32_t start = fakeMillis;
  while (fakeMillis < start + 120000) {
    fakeMillis += 10;
    a.poll();
    b.poll();
    for (auto& f : linkA.frames())
      if (f.type == kTypeHello) ta.push_back(fakeMillis);
    for (auto& f : linkB.frames())
      if (f.type == kTypeHello) tb.push_back(fakeMillis);
  }
  CHECK(ta.size() >= 6 && tb.size() >= 6);
  size_t same = 0;
  for (size_t i = 1; i < ta.size() && i < tb.size(); i++) same += ta[i] == tb[i];
  CHECK(same <= 1);
}

void testAckAdvancesAndDuplicateAckIgnored() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  pm.begin(11, 0);
  pm.poll();
  CHECK_EQ(pm.raise(17, PLCMAIL_ALARM, 42), 2);  // queued behind the HELLO
  CHECK_EQ(pm.clear(17), 3);
  auto fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  link.ack(11, 1);
  pm.poll();
  fs = link.frames();
  CHECK_EQ(fs.size(), 1);  // the next frame leaves at once
  CHECK_EQ(fs[0].type, kTypeEvent);
  CHECK_EQ(fs[0].seq, 2);
  CHECK_EQ(fs[0].code, 17);
  CHECK_EQ(fs[0].event, kEventRaise);
  CHECK_EQ(fs[0].severity, PLCMAIL_ALARM);
  CHECK_EQ(fs[0].nValues, 1);
  CHECK_EQ(fs[0].values[0].kind, kValueInt32);
  CHECK_EQ(fs[0].values[0].bits, 42);
  CHECK_EQ(statuses.size(), 1);
  CHECK_EQ(statuses[0].status, PLCMAIL_QUEUED);
  CHECK_EQ(statuses[0].seq, 1);

  // A repeated ACK of the HELLO and ACKs for other boots or future
  // sequence numbers change nothing.
  link.ack(11, 1);
  link.ack(12, 2);
  link.ack(11, 3);
  pm.poll();
  CHECK(link.frames().empty());
  CHECK_EQ(pm.pending(), 2);
  CHECK_EQ(pm.headSeq(), 2);

  link.ack(11, 2, 1);  // "duplicate": already queued by the gateway earlier
  pm.poll();
  fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  CHECK_EQ(fs[0].seq, 3);
  CHECK_EQ(fs[0].event, kEventClear);
  CHECK_EQ(fs[0].severity, PLCMAIL_ALARM);  // severity of the cleared alarm
  CHECK_EQ(statuses.back().status, PLCMAIL_QUEUED);
  CHECK_EQ(statuses.back().detail, 1);
  link.ack(11, 3);
  pm.poll();
  CHECK_EQ(pm.pending(), 0);
  runUntil(pm, fakeMillis + 5000);
  CHECK(link.frames().empty());  // nothing is retransmitted after its ACK
}

// SPEC.md 3.4: an ACK result other than 0 (queued) or 1 (duplicate) is
// malformed, and so is an ACK with more than its one payload byte: neither
// says the gateway has the frame, so the sender keeps it and retransmits.
void testMalformedAckIgnored() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  pm.begin(11, 0);
  pm.poll();
  link.frames();
  for (uint8_t result : {2, 7, 0x80, 0xFF}) link.replyRaw(kTypeAck, 11, 1, {result});
  link.replyRaw(kTypeAck, 11, 1, {0, 0});  // too long
  pm.poll();
  CHECK_EQ(pm.pending(), 1);
  CHECK(statuses.empty());
  runUntil(pm, fakeMillis + 1300);
  auto fs = link.frames();
  CHECK_EQ(fs.size(), 1);  // the HELLO again: still not ACKed
  CHECK_EQ(fs[0].type, kTypeHello);
  link.replyRaw(kTypeAck, 11, 1, {1});
  pm.poll();
  CHECK_EQ(pm.pending(), 0);
  CHECK_EQ(statuses.size(), 1);
  CHECK_EQ(statuses[0].detail, 1);
}

void testNakHandling() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  beginAcked(pm, link, 5);
  pm.raise(1, PLCMAIL_ALARM);
  pm.raise(2, PLCMAIL_ALARM);
  pm.poll();
  link.frames();
  // NAK busy: keep the frame, wait for the timer.
  link.nak(5, 2, kNakBusy);
  runUntil(pm, fakeMillis + 500);
  CHECK(link.frames().empty());
  CHECK_EQ(pm.headSeq(), 2);
  runUntil(pm, fakeMillis + 800);
  auto fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  CHECK_EQ(fs[0].seq, 2);
  // NAK bad frame (boot and seq 0): retransmit now.
  link.nak(0, 0, kNakBadFrame);
  fakeMillis += 10;
  pm.poll();
  fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  CHECK_EQ(fs[0].seq, 2);
  // NAK malformed: drop the frame, report it, go on with the next one.
  link.nak(5, 2, kNakMalformed);
  fakeMillis += 10;
  pm.poll();
  fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  CHECK_EQ(fs[0].seq, 3);
  CHECK_EQ(fs[0].code, 2);
  CHECK_EQ(statuses.back().status, PLCMAIL_REJECTED);
  CHECK_EQ(statuses.back().seq, 2);
  CHECK_EQ(statuses.back().detail, kNakMalformed);
}

void testQueueFullResyncs() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  beginAcked(pm, link, 21);
  link.frames();
  for (int i = 0; i < PLCMAIL_QUEUE_LEN; i++) CHECK_EQ(pm.raise(100 + i, PLCMAIL_WARNING), 2 + i);
  CHECK_EQ(pm.raise(200, PLCMAIL_CRITICAL), 0);  // full
  CHECK_EQ(statuses.back().status, PLCMAIL_OVERFLOW);
  CHECK_EQ(statuses.back().detail, 200);
  CHECK(pm.isActive(200));  // the state is kept even though the event is lost
  pm.clear(100);            // also lost; 100 is no longer active
  // Drain: every queued event goes out in order, then a HELLO resynchronises.
  uint32_t want = 2;
  for (int i = 0; i < PLCMAIL_QUEUE_LEN; i++) {
    pm.poll();
    auto fs = link.frames();
    CHECK_EQ(fs.size(), 1);
    CHECK_EQ(fs[0].seq, want);
    CHECK_EQ(fs[0].code, 100 + i);
    link.ack(21, want++);
  }
  pm.poll();
  auto fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  CHECK_EQ(fs[0].type, kTypeHello);
  CHECK_EQ(fs[0].seq, want);
  CHECK_EQ(fs[0].nActive, PLCMAIL_QUEUE_LEN);  // 101..103 and 200
  CHECK_EQ(fs[0].activeTotal, PLCMAIL_QUEUE_LEN);
  CHECK_EQ(fs[0].features, kFeatureVia);  // a resynchronising HELLO announces it too
  bool has200 = false, has100 = false;
  for (int i = 0; i < fs[0].nActive; i++) {
    has200 |= fs[0].active[i].code == 200 && fs[0].active[i].severity == PLCMAIL_CRITICAL;
    has100 |= fs[0].active[i].code == 100;
  }
  CHECK(has200);
  CHECK(!has100);
  link.ack(21, want);
  pm.poll();
  CHECK_EQ(pm.pending(), 0);
}

// The gateway is down for three hours, and millis() wraps 30 minutes in. The
// head is retransmitted with the very same bytes at most 37.5 s apart the
// whole time and heartbeats keep their 10 s (the 16-bit timers wrap every
// 65.5 s); alarms that change meanwhile overflow the queue. Once the gateway
// answers, the queued events go out in order and then one HELLO carries the
// state at the end of the outage.
void testGatewayDownForHours() {
  reset();
  fakeMillis = 0xFFFFFFFFu - 30u * 60 * 1000;
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  beginAcked(pm, link, 31);
  link.frames();
  CHECK_EQ(pm.raise(17, PLCMAIL_ALARM), 2);  // the head, unanswered for hours
  const uint32_t hours3 = 3u * 3600 * 1000;
  uint32_t lastHead = 0, lastBeat = 0, maxHeadGap = 0, minBeatGap = 0xFFFFFFFF, maxBeatGap = 0;
  int heads = 0, beats = 0, overflows = 0;
  std::vector<uint8_t> headBytes;
  for (uint32_t el = 10; el <= hours3; el += 10) {
    fakeMillis += 10;
    uint32_t minute = el / 60000;
    if (el % 60000 == 0) {
      // Every 20 minutes a new alarm 30..35; later 31 and 17 clear.
      if (minute % 20 == 0 && minute <= 120) pm.raise((uint16_t)(30 + minute / 20 - 1), PLCMAIL_WARNING);
      if (minute == 130) pm.clear(31);
      if (minute == 140) pm.clear(17);
    }
    pm.poll();
    std::vector<std::vector<uint8_t>> raw;
    auto fs = link.frames(&raw);
    for (size_t i = 0; i < fs.size(); i++) {
      if (fs[i].type == kTypeHeartbeat) {
        if (beats++) {
          minBeatGap = el - lastBeat < minBeatGap ? el - lastBeat : minBeatGap;
          maxBeatGap = el - lastBeat > maxBeatGap ? el - lastBeat : maxBeatGap;
        }
        lastBeat = el;
        continue;
      }
      CHECK_EQ(fs[i].seq, 2);
      if (heads++) {
        CHECK(raw[i] == headBytes);
        if (el - lastHead > maxHeadGap) maxHeadGap = el - lastHead;
      } else {
        headBytes = raw[i];
      }
      lastHead = el;
    }
  }
  for (auto& st : statuses) overflows += st.status == PLCMAIL_OVERFLOW;
  CHECK_EQ(overflows, 5);  // raises of 33, 34, 35 and clears of 31, 17
  CHECK(heads > 3 * 3600 / 38);
  CHECK(maxHeadGap <= 37500 + 10);
  CHECK(hours3 - lastHead <= 37500 + 10);
  CHECK_EQ(minBeatGap, 10000);
  CHECK_EQ(maxBeatGap, 10000);
  // The gateway is back: it ACKs whatever arrives.
  std::vector<Frame> got;
  for (int i = 0; i < 6000 && pm.pending(); i++) {
    fakeMillis += 10;
    pm.poll();
    for (auto& f : link.frames()) {
      if (f.type == kTypeHeartbeat) continue;
      got.push_back(f);
      link.ack(31, f.seq);
    }
  }
  CHECK_EQ(pm.pending(), 0);
  // Retransmissions of one frame are the same frame for the gateway.
  std::vector<Frame> once;
  for (auto& f : got)
    if (once.empty() || once.back().seq != f.seq) once.push_back(f);
  CHECK_EQ(once.size(), 5);
  if (once.size() != 5) return;
  const uint16_t codes[] = {17, 30, 31, 32};
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(once[i].type, kTypeEvent);
    CHECK_EQ(once[i].seq, 2 + i);
    CHECK_EQ(once[i].code, codes[i]);
    CHECK_EQ(once[i].event, kEventRaise);
  }
  const Frame& h = once[4];
  CHECK_EQ(h.type, kTypeHello);
  CHECK_EQ(h.seq, 6);
  CHECK(h.uptime >= 3 * 3600);
  CHECK_EQ(h.nActive, 5);
  CHECK_EQ(h.activeTotal, 5);
  std::set<uint16_t> active;
  for (int i = 0; i < h.nActive; i++) active.insert(h.active[i].code);
  CHECK(active == std::set<uint16_t>({30, 32, 33, 34, 35}));
}

void testHelloFrozenWhileOnTheWire() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.begin(3, 0);
  pm.raise(1, PLCMAIL_ALARM);
  pm.poll();
  std::vector<std::vector<uint8_t>> first, again;
  link.frames(&first);
  // Changes after the HELLO left are events queued behind it; the HELLO's
  // retransmission must not show them.
  CHECK_EQ(pm.clear(1), 2);
  CHECK_EQ(pm.raise(2, PLCMAIL_CRITICAL), 3);
  CHECK_EQ(pm.raise(1, PLCMAIL_WARNING), 4);
  runUntil(pm, fakeMillis + 1300);
  auto fs = link.frames(&again);
  CHECK_EQ(fs.size(), 1);
  CHECK(again[0] == first[0]);
  CHECK_EQ(fs[0].nActive, 1);
  CHECK_EQ(fs[0].active[0].severity, PLCMAIL_ALARM);
  CHECK_EQ(pm.activeCount(), 2);
}

uint32_t eepromCell() {
  uint32_t cell;
  memcpy(&cell, fakeEeprom + E2END - 3, 4);
  return cell;
}

void testRebootNewBootIdFromEeprom() {
  reset();
  memset(fakeEeprom, 0xFF, sizeof fakeEeprom);  // erased chip
  fakeBootBlock.limit = 0x12345678;              // SRAM after power-up
  fakeBootBlock.left = 0x9A;
  fakeEntropy = 0xC0FFEE00;
  uint32_t bootA, bootB;
  {
    FakeLink link;
    PlcMail pm(link);
    fakeMCUSR = 1;  // power-on
    pm.begin();
    CHECK_EQ(fakeMCUSR, 0);  // cleared for the next reset
    bootA = pm.bootId();
    CHECK_EQ(bootA, 0x40FFEE01);  // from the entropy, not 1
    CHECK_EQ(eepromCell(), bootA + PLCMAIL_BOOT_BLOCK);
    pm.poll();
    link.ack(bootA, 1);
    pm.raise(17, PLCMAIL_ALARM);
    pm.poll();
    auto fs = link.frames();
    CHECK_EQ(fs.size(), 2);
    CHECK_EQ(fs[0].resetCause, 1);
    CHECK_EQ(fs[1].seq, 2);
    // ...and the PLC resets before the gateway ACKed seq 2.
  }
  {
    FakeLink link;
    PlcMail pm(link);
    fakeMCUSR = 8;  // watchdog: RAM kept, no EEPROM write
    pm.begin();
    bootB = pm.bootId();
    CHECK_EQ(bootB, bootA + 1);
    CHECK_EQ(eepromCell(), bootA + PLCMAIL_BOOT_BLOCK);
    pm.raise(17, PLCMAIL_ALARM);  // the sketch re-raises what is active at boot
    pm.poll();
    auto fs = link.frames();
    CHECK_EQ(fs.size(), 1);
    CHECK_EQ(fs[0].type, kTypeHello);
    CHECK_EQ(fs[0].boot, bootB);
    CHECK_EQ(fs[0].seq, 1);  // sequence numbers restart with the new boot id
    CHECK_EQ(fs[0].resetCause, 8);
    CHECK_EQ(fs[0].nActive, 1);
    CHECK_EQ(fs[0].active[0].code, 17);
  }
  // The EEPROM is erased again (or the board swapped) with the same
  // entropy: the id still differs from both, because the SRAM differs.
  memset(fakeEeprom, 0xFF, sizeof fakeEeprom);
  {
    FakeLink link;
    PlcMail pm(link);
    fakeEntropy = 0x0BADCAFE;
    pm.begin();
    CHECK(pm.bootId() != bootA && pm.bootId() != bootB);
    CHECK(pm.bootId() != 1);
  }
}

// A reset loop writes the EEPROM cell once per PLCMAIL_BOOT_BLOCK warm
// resets and never hands out an id twice, also across power-ons.
void testBootIdWearAndUniqueness() {
  uint32_t cell = 0xFFFFFFFF;
  PlcMailBootBlock block = {0xDEAD, 0xBE};
  std::set<uint32_t> seen;
  int writes = 0;
  for (int boot = 0; boot < 5000; boot++) {
    if (boot % 700 == 0) {  // power cut: RAM garbage
      block.limit = (uint32_t)boot * 2654435761u;
      block.left = (uint8_t)(block.limit >> 8);
    }
    uint32_t before = cell;
    uint32_t id = PlcMail::takeBootId(&cell, &block, 0x7777);
    if (cell != before) writes++;
    CHECK(id != 0 && id != 0xFFFFFFFF);
    CHECK(seen.insert(id).second);  // never repeated
  }
  // 5000 warm resets and 8 power-ons: 20 blocks of 256 plus one per power-on.
  CHECK(writes <= 5000 / (int)PLCMAIL_BOOT_BLOCK + 8);
  // A cell of 0 (written by hand) counts as erased: never boot id 0.
  cell = 0;
  block.limit = 0;
  block.left = 5;
  CHECK_EQ(PlcMail::takeBootId(&cell, &block, 0), 1);
  CHECK_EQ(cell, 1 + PLCMAIL_BOOT_BLOCK);
  // Junk so high that its block would reach 0xFFFFFFFF (erased) or wrap to
  // 0 counts as erased: a random start, and no warm reset ever yields 0.
  const uint32_t junk[] = {0xFFFFFEFFu, 0xFFFFFF80u, 0xFFFFFFFEu};
  for (uint32_t j : junk) {
    cell = j;
    uint32_t id = PlcMail::takeBootId(&cell, &block, 0x12340000);
    CHECK_EQ(id, 0x12340001);
    for (int boot = 0; boot < 600; boot++) CHECK(PlcMail::takeBootId(&cell, &block, 0x12340000) != 0);
  }
  cell = 0xFFFFFEFEu;  // the highest cell still taken as a counter
  CHECK_EQ(PlcMail::takeBootId(&cell, &block, 0), 0xFFFFFEFEu);
  CHECK_EQ(cell, 0xFFFFFEFEu + PLCMAIL_BOOT_BLOCK);
}

void testHeartbeat() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.begin(8, 0);
  pm.raise(5, PLCMAIL_INFO);
  pm.poll();
  link.ack(8, 1);
  link.frames();
  runUntil(pm, fakeMillis + 35000);
  auto fs = link.frames();
  CHECK_EQ(fs.size(), 3);  // at 10, 20 and 30 s
  for (auto& f : fs) {
    CHECK_EQ(f.type, kTypeHeartbeat);
    CHECK_EQ(f.seq, 0);
    CHECK_EQ(f.activeTotal, 1);
  }
  CHECK_EQ(fs[2].uptime, 30);
  CHECK_EQ(pm.uptime(), 35);
}

// The uptime counts 16 bits of millis(): exact as long as poll() runs at
// least every 65.5 s (here every 65 s, across the 32-bit wrap as well), and
// a longer stall costs it a multiple of 65.536 s (documented in README.md).
void testUptimeSlowPoll() {
  reset();
  fakeMillis = 0xFFFFFFFFu - 100000;
  FakeLink link;
  PlcMail pm(link);
  pm.begin(9, 0);
  for (int i = 0; i < 20; i++) {
    fakeMillis += 65000;
    pm.poll();
  }
  CHECK_EQ(pm.uptime(), 1300);
  fakeMillis += 65536 + 2000;  // one stall past the 16-bit wrap
  pm.poll();
  CHECK_EQ(pm.uptime(), 1302);
}

void testDeliveryStatus() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  beginAcked(pm, link, 13);
  uint32_t seq = pm.raise(17, PLCMAIL_ALARM);
  pm.poll();
  link.ack(13, seq);
  Frame d = {};
  d.version = 1;
  d.type = kTypeDelivery;
  d.boot = 13;
  d.seq = seq;
  d.status = kDeliveryAccepted;
  d.smtpCode = 250;
  link.reply(d);
  d.boot = 12;  // for an earlier boot: ignored
  link.reply(d);
  d.boot = 13;
  d.status = kDeliveryFailed;
  d.smtpCode = 550;
  link.reply(d);
  pm.poll();
  CHECK_EQ(statuses.size(), 4);
  CHECK_EQ(statuses[2].status, PLCMAIL_DELIVERED);
  CHECK_EQ(statuses[2].seq, seq);
  CHECK_EQ(statuses[2].detail, 250);
  CHECK_EQ(statuses[3].status, PLCMAIL_FAILED);
  CHECK_EQ(statuses[3].detail, 550);
}

// DELIVERY's optional 4th byte `via` (SPEC.md 3.6), hand-built frames: 0 or
// absent is the mail server as before, k >= 1 the gateway's k-th fallback
// channel, reported as PLCMAIL_VIA_CHANNEL with k as the detail; bytes after
// it are ignored.
void testDeliveryViaChannel() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  beginAcked(pm, link, 13);
  uint32_t seq = pm.raise(17, PLCMAIL_ALARM);
  pm.poll();
  link.ack(13, seq);
  link.replyRaw(kTypeDelivery, 13, seq, {1, 0xC8, 0x00, 0x01});              // webhook, HTTP 200
  link.replyRaw(kTypeDelivery, 13, seq, {1, 0x00, 0x00, 0x03});              // MQTT: no status
  link.replyRaw(kTypeDelivery, 13, seq, {1, 0xCA, 0x00, 0xFF, 0xAA, 0xBB});  // later bytes ignored
  link.replyRaw(kTypeDelivery, 13, seq, {1, 0xFA, 0x00, 0x00});              // via 0 written out
  link.replyRaw(kTypeDelivery, 13, seq, {2, 0x26, 0x02});                    // the mail failed
  link.replyRaw(kTypeDelivery, 12, seq, {1, 0xC8, 0x00, 0x01});              // another boot
  Frame d = {};
  d.version = 1;
  d.type = kTypeDelivery;
  d.boot = 13;
  d.seq = seq;
  d.status = kDeliveryAccepted;
  d.smtpCode = 202;
  d.via = 2;
  link.reply(d);  // through the codec's encoder
  pm.poll();
  CHECK_EQ(statuses.size(), 8);
  if (statuses.size() != 8) return;
  const Status want[] = {{PLCMAIL_VIA_CHANNEL, seq, 1}, {PLCMAIL_VIA_CHANNEL, seq, 3},
                         {PLCMAIL_VIA_CHANNEL, seq, 255}, {PLCMAIL_DELIVERED, seq, 250},
                         {PLCMAIL_FAILED, seq, 550},      {PLCMAIL_VIA_CHANNEL, seq, 2}};
  for (int i = 0; i < 6; i++) {
    CHECK_EQ(statuses[2 + i].status, want[i].status);
    CHECK_EQ(statuses[2 + i].seq, want[i].seq);
    CHECK_EQ(statuses[2 + i].detail, want[i].detail);
  }
}

void testNoiseAndSplitReplies() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  pm.begin(14, 0);
  pm.poll();
  link.frames();
  // Garbage, an over-long run without delimiter, a frame with a bad CRC, then
  // a good ACK delivered in two halves across polls.
  for (int i = 0; i < 200; i++) link.in.push_back(0x55);
  link.in.push_back(0);
  link.ack(14, 1);
  uint8_t& victim = link.in[link.in.size() - 3];
  victim = victim == 0x40 ? 0x41 : (uint8_t)(victim ^ 0x40);  // a bad CRC
  FakeLink tmp;
  tmp.ack(14, 1);
  std::deque<uint8_t> good = tmp.in;
  pm.poll();
  CHECK_EQ(pm.pending(), 1);
  link.in.insert(link.in.end(), good.begin(), good.begin() + 6);
  pm.poll();
  CHECK_EQ(pm.pending(), 1);
  link.in.insert(link.in.end(), good.begin() + 6, good.end());
  pm.poll();
  CHECK_EQ(pm.pending(), 0);
  CHECK_EQ(statuses.size(), 1);
}

// Up to four values of any type, with and without a text, in order; a fifth
// is not possible (no overload), a queue slot holds all four.
// A severity is two bits on the wire, in the EVENT as in the HELLO snapshot.
void testSeverityTwoBits() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  beginAcked(pm, link, 17);
  link.frames();
  CHECK_EQ(pm.raise(30, 4 + PLCMAIL_ALARM), 2);
  pm.poll();
  auto fs = link.frames();
  CHECK_EQ(fs.size(), 1);
  if (fs.size() != 1) return;
  CHECK_EQ(fs[0].severity, PLCMAIL_ALARM);
}

void testEventValues() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  beginAcked(pm, link, 16);
  link.frames();
  int16_t i16 = -7;
  uint8_t u8 = 200;
  pm.raise(20, PLCMAIL_ALARM, i16, 2.5, true, 4000000000UL, F("four values"));
  pm.raise(21, PLCMAIL_WARNING, -3L, u8);
  pm.raise(22, PLCMAIL_INFO, 1.25f, 0U, false);
  pm.raise(23, PLCMAIL_INFO, F("text only"));
  PlcMailValue vs[] = {1, 2, 3, 4, 5};
  for (uint32_t seq = 2; seq <= 6; seq++) {
    if (seq == 3) CHECK_EQ(pm.raiseValues(24, PLCMAIL_INFO, vs, 5, 0), 6);  // the fifth is dropped
    pm.poll();
    auto fs = link.frames();
    CHECK_EQ(fs.size(), 1);
    if (fs.size() != 1) return;
    const Frame& f = fs[0];
    CHECK_EQ(f.seq, seq);
    float v;
    switch (seq) {
      case 2:
        CHECK_EQ(f.nValues, 4);
        CHECK(f.values[0].kind == kValueInt32 && f.values[0].bits == (uint32_t)-7);
        memcpy(&v, &f.values[1].bits, 4);
        CHECK(f.values[1].kind == kValueFloat32 && v == 2.5f);
        CHECK(f.values[2].kind == kValueBool && f.values[2].bits == 1);
        CHECK(f.values[3].kind == kValueUint32 && f.values[3].bits == 4000000000UL);
        CHECK_EQ(f.textLen, 11);
        CHECK(memcmp(f.text, "four values", 11) == 0);
        break;
      case 3:
        CHECK_EQ(f.nValues, 2);
        CHECK(f.values[0].kind == kValueInt32 && f.values[0].bits == (uint32_t)-3);
        CHECK(f.values[1].kind == kValueInt32 && f.values[1].bits == 200);  // uint8_t promotes to int
        CHECK_EQ(f.textLen, 0);
        break;
      case 4:
        CHECK_EQ(f.nValues, 3);
        memcpy(&v, &f.values[0].bits, 4);
        CHECK(f.values[0].kind == kValueFloat32 && v == 1.25f);
        CHECK(f.values[1].kind == kValueUint32 && f.values[1].bits == 0);
        CHECK(f.values[2].kind == kValueBool && f.values[2].bits == 0);
        break;
      case 5:
        CHECK_EQ(f.nValues, 0);
        CHECK_EQ(f.textLen, 9);
        break;
      case 6:
        CHECK_EQ(f.nValues, 4);
        CHECK_EQ(f.values[3].bits, 4);
        break;
    }
    link.ack(16, seq);
    pm.poll();
  }
}

void testEventText() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  beginAcked(pm, link, 15);
  link.frames();
  pm.raise(9, PLCMAIL_CRITICAL, 1.5f, F("oil pressure low"));
  pm.raise(10, PLCMAIL_CRITICAL, 2.0f, F("this text is far longer than thirty-two bytes"));
  pm.raise(11, PLCMAIL_INFO, true);
  pm.raise(12, PLCMAIL_INFO, 4000000000UL);
  for (uint32_t seq = 2; seq <= 5; seq++) {
    pm.poll();
    auto fs = link.frames();
    CHECK_EQ(fs.size(), 1);
    const Frame& f = fs[0];
    switch (seq) {
      case 2: {
        CHECK_EQ(f.textLen, 16);
        CHECK(memcmp(f.text, "oil pressure low", 16) == 0);
        float v;
        memcpy(&v, &f.values[0].bits, 4);
        CHECK(f.values[0].kind == kValueFloat32 && v == 1.5f);
        break;
      }
      case 3:
        CHECK_EQ(f.textLen, 32);
        CHECK(memcmp(f.text, "this text is far longer than thi", 32) == 0);
        break;
      case 4:
        CHECK(f.values[0].kind == kValueBool && f.values[0].bits == 1);
        break;
      case 5:
        CHECK(f.values[0].kind == kValueUint32 && f.values[0].bits == 4000000000UL);
        break;
    }
    link.ack(15, seq);
  }
}

FakeLink* dirLink;
void direction(bool tx) {
  dirLink->txEnabled = tx;
  if (!tx) CHECK(dirLink->flushes > 0);  // flushed before the bus is released
}

void testRs485Direction() {
  reset();
  FakeLink link;
  link.directionControlled = true;
  link.txEnabled = false;
  dirLink = &link;
  PlcMail pm(link);
  pm.setDirectionCallback(direction);
  pm.begin(16, 0);
  pm.poll();
  CHECK(!link.wroteWhileRx);
  CHECK(!link.txEnabled);
  CHECK_EQ(link.flushes, 1);
  CHECK_EQ(link.frames().size(), 1);

  FakeLink link2;
  PlcMail pins(link2);
  pins.setDirectionPins(75, 76);
  CHECK(fakePinModes[75] == OUTPUT && fakePinModes[76] == OUTPUT);
  pins.begin(17, 0);
  pins.poll();
  CHECK_EQ(link2.flushes, 1);
  CHECK(fakePins[75] == LOW && fakePins[76] == LOW);  // back to receive
}

// On a two-wire RS-485 bus with the receiver left enabled the PLC hears its
// own frames; they must not be mistaken for answers.
void testOwnEchoIgnored() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  pm.begin(18, 0);
  for (int i = 0; i < 5; i++) {
    pm.poll();
    link.in.insert(link.in.end(), link.out.begin(), link.out.end());  // the echo
    link.out.clear();
    fakeMillis += 1300;
  }
  CHECK_EQ(pm.pending(), 1);
  CHECK(statuses.empty());
}

// Random line noise and random well-formed gateway frames: nothing crashes
// (the host build runs with AddressSanitizer and UBSan) and the sender ends
// in a consistent state.
void testNoiseRobustness() {
  reset();
  FakeLink link;
  PlcMail pm(link);
  pm.onStatus(onStatus);
  pm.begin(19, 0);
  uint32_t x = 12345;
  auto rnd = [&x]() {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
  };
  for (int round = 0; round < 3000; round++) {
    if (rnd() % 3 == 0) pm.raise((uint16_t)(rnd() % 40), (uint8_t)(rnd() % 4), (long)rnd());
    if (rnd() % 3 == 0) pm.clear((uint16_t)(rnd() % 40));
    int n = (int)(rnd() % 40);
    for (int i = 0; i < n; i++) link.in.push_back((uint8_t)(rnd() % 5 == 0 ? 0 : rnd()));
    if (rnd() % 4 == 0) {
      Frame f = {};
      f.version = 1;
      f.type = (uint8_t)(0x81 + rnd() % 3);
      f.boot = rnd() % 2 ? 19 : 0;
      f.seq = pm.headSeq() - (rnd() % 2);
      f.ackResult = (uint8_t)(rnd() % 2);
      f.nakReason = (uint8_t)(1 + rnd() % 5);
      f.status = (uint8_t)(1 + rnd() % 2);
      f.smtpCode = 250;
      if (f.type != kTypeNak || f.nakReason != kNakBadFrame || f.boot == 0) link.reply(f);
    }
    fakeMillis += rnd() % 3000;
    pm.poll();
    link.out.clear();
    CHECK(pm.pending() <= PLCMAIL_QUEUE_LEN + 1);
  }
  CHECK(pm.activeCount() <= PLCMAIL_MAX_ACTIVE);
}

}  // namespace

int main() {
  RUN(testHelloCarriesBootSnapshot);
  RUN(testRetransmitBackoffSameBytes);
  RUN(testJitterDiffersBetweenBoards);
  RUN(testAckAdvancesAndDuplicateAckIgnored);
  RUN(testMalformedAckIgnored);
  RUN(testNakHandling);
  RUN(testQueueFullResyncs);
  RUN(testGatewayDownForHours);
  RUN(testHelloFrozenWhileOnTheWire);
  RUN(testRebootNewBootIdFromEeprom);
  RUN(testBootIdWearAndUniqueness);
  RUN(testHeartbeat);
  RUN(testUptimeSlowPoll);
  RUN(testDeliveryStatus);
  RUN(testDeliveryViaChannel);
  RUN(testNoiseAndSplitReplies);
  RUN(testEventText);
  RUN(testEventValues);
  RUN(testSeverityTwoBits);
  RUN(testRs485Direction);
  RUN(testOwnEchoIgnored);
  RUN(testNoiseRobustness);
  if (testFailures) {
    printf("FAIL: %d check(s) failed\n", testFailures);
    return 1;
  }
  printf("PASS\n");
  return 0;
}
