package smtpd_test

import (
	"encoding/base64"
	"mime"
)

type mimeDecoder = mime.WordDecoder

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
