// Package message is what plcmail does to the bytes of an Internet message
// (RFC 5322, MIME) between a client and the upstream provider. Like
// package protocol it works on bytes only: it never opens a file or a
// connection, keeps no state, and never changes a slice it is given, so
// that the spool copy of a message stays as it was stored.
//
// Every function that needs the header reads it with the one parser in
// header.go, so that repair, `sendmail -t`, the 8-bit downgrade and the
// SMTPUTF8 check never disagree on where a field or the header ends.
//
//   - header.go: the header parser and its field type; RecipientFields
//     (for `sendmail -t`) and HeaderIsUTF8 (for SMTPUTF8).
//   - repair.go: Repair, the cleanup every submission passes through
//     before it is spooled (line ends, missing fields, 8-bit declaration,
//     lines over 998 octets), and Has8Bit.
//   - downgrade.go: Downgrade8Bit, the conversion to quoted-printable for
//     an upstream without 8BITMIME, done on the wire only; and the one
//     MIME walker (converter) it shares with the long-line fix.
//   - longline.go: the fix of lines over 998 octets that Repair applies:
//     header fields folded, parts re-encoded.
//   - messageid.go: MessageID, for mail that arrives without one.
//
// Package messagetest holds the messages and checks that the tests of the
// packages sending these bytes share.
package message
