package channel

import "testing"

// mailText reads any bytes a spool file may hold (mail relayed from the
// LAN included) without panicking, and its text stays within maxText.
func FuzzMailText(f *testing.F) {
	f.Add([]byte(alarmMail))
	f.Add([]byte("Subject: =?utf-8?b?w7w=?=\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/alternative; boundary=y\r\n\r\n--y\r\nContent-Transfer-Encoding: base64\r\n\r\nw7w=\r\n--y--\r\n--x--\r\n"))
	f.Add([]byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		subj, text := mailText(data)
		if len(text) > maxText+len("…") {
			t.Fatalf("text of %d bytes", len(text))
		}
		if len(subj) > len(data)*4 {
			t.Fatalf("subject of %d bytes from %d", len(subj), len(data))
		}
	})
}
